"""InternVL (InternVL3 in Hugging Face format): dynamic 448 px tiles plus a thumbnail per
image, each tile's InternViT patches pixel-shuffled 2x2 into one token grid."""
