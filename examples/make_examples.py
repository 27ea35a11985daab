"""Makes the bundled example: the reference crop of ZSSR_TF1_NOTES.md section 11.

HR = skimage.data.astronaut()[0:256, 128:384] (public domain); LR = MATLAB-exact bicubic x1/2 of it, rounded to
8 bits. Run from the repository root: `python examples/make_examples.py`.
"""

import os

import numpy as np
import skimage.data

from zssr_tf.image_io import write_image
from zssr_tf.imresize import imresize

HERE = os.path.dirname(os.path.abspath(__file__))

hr = skimage.data.astronaut()[0:256, 128:384]
lr = np.round(np.clip(imresize(hr / 255.0, 0.5, kernel="cubic"), 0, 1) * 255) / 255.0
write_image(os.path.join(HERE, "astronaut.png"), lr)
write_image(os.path.join(HERE, "astronaut_gt.png"), hr / 255.0)
