"""Gemma 3: SigLIP tiles pooled to a fixed token grid, bidirectional attention inside
each image block, sliding-window (local) and global decoder layers."""
