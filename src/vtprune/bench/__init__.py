"""Speed and memory measurements: always ratios against the unpruned model measured
in the same run."""
