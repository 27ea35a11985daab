"""zssr_tf: zero-shot super-resolution (ZSSR, ZSRGAN, DGDML-SR) in TensorFlow 2 / Keras 3.

    from zssr_tf import ZSSR, Config, imresize
    sr = ZSSR("lr.png", Config()).run()

The trainers are imported on first use, so `zssr_tf.config` (and `imresize`) can be used without TensorFlow.
"""

from zssr_tf.config import Config
from zssr_tf.imresize import imresize

__all__ = ["Config", "DGDML", "ZSRGAN", "ZSSR", "imresize"]
__version__ = "0.1.0"

_TRAINERS = {"ZSSR": "zssr_tf.methods.zssr", "ZSRGAN": "zssr_tf.methods.zsrgan", "DGDML": "zssr_tf.methods.dgdml"}


def __getattr__(name: str):
    if name in _TRAINERS:
        import importlib

        return getattr(importlib.import_module(_TRAINERS[name]), name)
    raise AttributeError(f"module 'zssr_tf' has no attribute {name!r}")
