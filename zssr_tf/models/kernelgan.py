"""KernelGAN's networks (Bell-Kligler, Shocher, Irani, NeurIPS 2019): the linear downscaler and its patch critic.

The generator is a deep linear network: its composition is one correlation with a kernel, followed by
subsampling by 2, so the image's downscaling kernel can be read out of its weights (`read_kernel`). Depth makes
the optimisation better behaved than learning the kernel's taps directly (the paper's argument); linearity keeps
it a kernel.
"""

from __future__ import annotations

import keras
import tensorflow as tf

GENERATOR_KERNEL_SIZES = (7, 5, 3, 1, 1, 1)


def kernel_size(layer_sizes: tuple[int, ...] = GENERATOR_KERNEL_SIZES) -> int:
    """Side of the kernel a stack of valid correlations of these sizes composes to (13 for KernelGAN's)."""
    return sum(layer_sizes) - len(layer_sizes) + 1


def build_linear_generator(
    width: int = 64,
    layer_sizes: tuple[int, ...] = GENERATOR_KERNEL_SIZES,
    scale: int = 2,
    seed: int | None = None,
    name: str = "kernelgan_generator",
) -> keras.Model:
    """KernelGAN's G: valid convolutions of `layer_sizes`, `width` channels, no biases, no activations; the last
    one (1x1, to one channel) has stride `scale` (in the last layer, so the read-out kernel is not dilated), done as
    a subsampling of its stride-1 output.

    It takes one channel: a colour image goes through it as a batch of its channels (one kernel for all of them).
    A 64x64 crop gives a 26x26 output at x2 (the 13x13 composed kernel, then every second pixel).

    Args:
      width: channels of the hidden layers.
      layer_sizes: the square kernel sizes, first to last; the last must be 1 (the stride acts on it alone).
      scale: the downscaling factor (stride of the last layer).
      seed: seed of the initialisers (layer i uses seed + i); None draws fresh weights.
      name: model name.

    Returns:
      A float32 `keras.Model` mapping [N, H, W, 1] to [N, (H - k) // scale + 1, (W - k) // scale + 1, 1],
      k = `kernel_size(layer_sizes)`.
    """
    if layer_sizes[-1] != 1 or len(layer_sizes) < 2:
        raise ValueError(f"layer_sizes must end with a 1x1 layer and have at least two, got {layer_sizes}")
    image = keras.Input(shape=(None, None, 1), name="image")
    x = image
    for i, size in enumerate(layer_sizes):
        last = i == len(layer_sizes) - 1
        # KernelGAN's start: Glorot normal with gain 0.1, a nearly zero kernel that Adam's normalised steps grow.
        initializer = keras.initializers.VarianceScaling(0.01, "fan_avg", "untruncated_normal",
                                                         seed=None if seed is None else seed + i)
        x = keras.layers.Conv2D(1 if last else width, size, use_bias=False, kernel_initializer=initializer,
                                dtype="float32", name=f"conv_{i}")(x)
    # The stride of the last (1x1) layer as every `scale`-th pixel of its stride-1 output: the same values and
    # gradients. oneDNN's weight gradient of a strided 1x1 convolution corrupts the heap (a segmentation fault
    # within a few steps) on some CPUs (seen with TensorFlow 2.21 on an AMD EPYC with AVX512-BF16, in float32 too).
    x = x[:, ::scale, ::scale, :]
    return keras.Model(image, x, name=name)


def read_kernel(generator: keras.Model) -> tf.Tensor:
    """The generator's downscaling kernel: a delta passed through its layers at stride 1 (differentiable).

    A valid correlation of a delta at the centre of a (2k - 1)-pixel square gives the k x k kernel flipped on
    both axes; the flip undoes it. `imresize(x, 1 / scale, kernel=k)`-style use (correlate, then subsample) with
    this kernel is what the generator computes.

    Returns:
      float32 [k, k] tensor.
    """
    layers = [layer for layer in generator.layers if isinstance(layer, keras.layers.Conv2D)]
    k = kernel_size(tuple(int(layer.kernel.shape[0]) for layer in layers))
    delta = tf.scatter_nd([[0, k - 1, k - 1, 0]], [1.0], (1, 2 * k - 1, 2 * k - 1, 1))
    x = delta
    for layer in layers:
        x = tf.nn.conv2d(x, layer.kernel, strides=1, padding="VALID")
    return tf.reverse(x[0, :, :, 0], axis=[0, 1])


def build_patch_discriminator(
    channels: int = 3,
    width: int = 64,
    depth: int = 7,
    first_size: int = 7,
    seed: int | None = None,
    name: str = "kernelgan_discriminator",
) -> keras.Model:
    """KernelGAN's D: a fully convolutional critic whose every output sees one 7x7 patch.

    A spectral-normalised `first_size` convolution, `depth - 2` spectral-normalised 1x1 convolutions each with
    batch norm and ReLU, a spectral-normalised 1x1 convolution to one map, and a sigmoid. Spectral norm keeps the
    critic Lipschitz, and the small receptive field makes it judge the patch statistics (the internal recurrence
    across scales), not the content. Starting weights: Glorot normal with gain 0.1.

    Returns:
      A float32 `keras.Model` mapping [N, H, W, channels] to [N, H - first_size + 1, W - first_size + 1, 1]
      probabilities of being a patch of the input image (not of a downscaled one).
    """
    if depth < 2 or width < 1:
        raise ValueError(f"depth must be >= 2 and width >= 1, got {depth}, {width}")

    def conv(filters: int, size: int, i: int) -> keras.layers.Layer:
        initializer = keras.initializers.VarianceScaling(0.01, "fan_avg", "untruncated_normal",
                                                         seed=None if seed is None else seed + i)
        return keras.layers.SpectralNormalization(
            keras.layers.Conv2D(filters, size, kernel_initializer=initializer, dtype="float32"), name=f"conv_{i}")

    image = keras.Input(shape=(None, None, channels), name="image")
    x = conv(width, first_size, 0)(image)
    for i in range(1, depth - 1):
        x = conv(width, 1, i)(x)
        x = keras.layers.BatchNormalization(name=f"batch_norm_{i}")(x)
        x = keras.layers.ReLU(name=f"relu_{i}")(x)
    x = conv(1, 1, depth - 1)(x)
    probabilities = keras.layers.Activation("sigmoid", dtype="float32", name="probability")(x)
    return keras.Model(image, probabilities, name=name)
