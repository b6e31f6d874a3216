"""Model-independent mechanics: the hooks that prune a model instance (hooks.py), one
prefill and one decoding step (prefill.py, decode.py), the signals computed from a
family's facts (signal_source.py), stages run over image groups (stage_runner.py),
compaction, and the state that keeps cached decoding consistent (sequence.py).
Nothing here knows which method runs, and it reads families only through
adapter_protocol.py."""
