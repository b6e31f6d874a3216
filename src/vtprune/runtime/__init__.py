"""Model-independent mechanics: image layout, selection over image groups,
compaction of embeddings / masks / positions, and the per-sequence state that keeps
cached decoding consistent. Nothing here knows which method runs or which model."""
