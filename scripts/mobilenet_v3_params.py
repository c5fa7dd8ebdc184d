#!/usr/bin/env python3
"""Parameter counts of Keras's MobileNetV3Small and MobileNetV3Large for each
alpha and minimalistic, with and without top, counted from the layer list of
Keras's keras/src/applications/mobilenet_v3.py (no Keras needed), as
tests/test_cli_mobilenet_v3.c expects them from `graft summary --base`.

Keras's docstring table lists parameters in millions for the TF-slim
checkpoints: Large 1.0 5.4, 0.75 4.0, minimalistic 3.9 agree with these
counts; its Small figures (2.9, 2.4, 2.0) are the slim models', not the
Keras network's (2,554,968 for Small 1.0 with top, as Keras's summary says).

Usage: python3 scripts/mobilenet_v3_params.py
"""


def make_divisible(v, divisor=8):
    """Keras's _depth: channels rounded to a multiple of 8, never 10% down."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def conv(cin, cout, k=1, bias=False):
    return cin * cout * k * k + (cout if bias else 0)


def batch_norm(c):
    return 4 * c  # gamma, beta, moving mean and variance


# expansion, filters, kernel (None: the model's: 5, or 3 when minimalistic),
# squeeze-and-excite (when not minimalistic); strides do not change counts.
SMALL = [(1, 16, 3, True), (72 / 16, 24, 3, False), (88 / 24, 24, 3, False),
         (4, 40, None, True), (6, 40, None, True), (6, 40, None, True),
         (3, 48, None, True), (3, 48, None, True), (6, 96, None, True),
         (6, 96, None, True), (6, 96, None, True)]
LARGE = [(1, 16, 3, False), (4, 24, 3, False), (3, 24, 3, False),
         (3, 40, None, True), (3, 40, None, True), (3, 40, None, True),
         (6, 80, 3, False), (2.5, 80, 3, False), (2.3, 80, 3, False),
         (2.3, 80, 3, False), (6, 112, 3, True), (6, 112, 3, True),
         (6, 160, None, True), (6, 160, None, True), (6, 160, None, True)]


def count(model, alpha, minimalistic, include_top, classes=1000):
    blocks, last_point = (SMALL, 1024) if model == "small" else (LARGE, 1280)
    total = conv(3, 16, 3) + batch_norm(16)  # Conv, Conv/BatchNorm
    channels = 16
    for i, (expansion, filters, kernel, se) in enumerate(blocks):
        filters = make_divisible(filters * alpha)
        kernel = kernel or (3 if minimalistic else 5)
        x = channels
        if i:  # expanded_conv_N/expand and its BatchNorm
            x = make_divisible(channels * expansion)
            total += conv(channels, x) + batch_norm(x)
        total += kernel * kernel * x + batch_norm(x)  # depthwise, no bias
        if se and not minimalistic:
            squeeze = make_divisible(x * 0.25)
            total += conv(x, squeeze, bias=True) + conv(squeeze, x, bias=True)
        total += conv(x, filters) + batch_norm(filters)  # project
        channels = filters
    last_conv = make_divisible(channels * 6)
    total += conv(channels, last_conv) + batch_norm(last_conv)  # Conv_1
    if include_top:
        if alpha > 1.0:
            last_point = make_divisible(last_point * alpha)
        total += conv(last_conv, last_point, bias=True)  # Conv_2
        total += conv(last_point, classes, bias=True)  # Logits
    return total


if __name__ == "__main__":
    print("model  alpha minimalistic     with top   without top")
    for model in ("small", "large"):
        for alpha in (1.0, 0.75):
            for minimalistic in (False, True):
                print("%-6s %5g %-12s %12s %13s" % (
                    model, alpha, minimalistic,
                    "{:,}".format(count(model, alpha, minimalistic, True)),
                    "{:,}".format(count(model, alpha, minimalistic, False))))
