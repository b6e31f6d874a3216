"""Registration with lmms-eval (``pip install vtprune[lmms]``): the entry point
``lmms_eval.models`` in vtprune's package metadata names :func:`manifest`, so that
``python -m lmms_eval --model vtprune`` finds :class:`vtprune.eval.lmms_model.VtpruneLMM`
without lmms-eval knowing about vtprune."""

from __future__ import annotations

MODEL_ID = "vtprune"
CLASS_PATH = "vtprune.eval.lmms_model.VtpruneLMM"


def manifest():
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=CLASS_PATH)


def lmms_eval_available() -> bool:
    try:
        import lmms_eval  # noqa: F401
    except ImportError:
        return False
    return True
