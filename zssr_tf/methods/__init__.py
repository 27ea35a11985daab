"""The zero-shot methods, each a `zssr_tf.engine.Trainer` subclass, registered by `Config.method` name."""

from zssr_tf.methods.dgdml import DGDML
from zssr_tf.methods.zsrgan import ZSRGAN
from zssr_tf.methods.zssr import ZSSR

METHODS = {"zssr": ZSSR, "zsrgan": ZSRGAN, "dgdml": DGDML}
# Methods that take a depth map (`depth=` of the trainer, `--depth`, `<name>_depth.*` in folders).
DEPTH_METHODS = ("dgdml",)

__all__ = ["DEPTH_METHODS", "DGDML", "METHODS", "ZSRGAN", "ZSSR"]
