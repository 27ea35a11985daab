"""zssr_tf: zero-shot super-resolution (ZSSR) in TensorFlow 2 / Keras 3.

    from zssr_tf import ZSSR, Config, imresize
    sr = ZSSR("lr.png", Config()).run()
"""

from zssr_tf.config import Config
from zssr_tf.imresize import imresize
from zssr_tf.train import ZSSR

__all__ = ["Config", "ZSSR", "imresize"]
__version__ = "0.1.0"
