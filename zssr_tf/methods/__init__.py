"""The zero-shot methods, each a `zssr_tf.engine.Trainer` subclass, registered by `Config.method` name."""

from zssr_tf.methods.zsrgan import ZSRGAN
from zssr_tf.methods.zssr import ZSSR

METHODS = {"zssr": ZSSR, "zsrgan": ZSRGAN}

__all__ = ["METHODS", "ZSRGAN", "ZSSR"]
