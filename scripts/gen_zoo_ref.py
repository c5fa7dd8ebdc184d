#!/usr/bin/python3
"""Reference outputs for the zoo's newer architectures (tests/test_zoo_keras_ref.c).

For each case this writes, into OUTDIR:
  ref_<case>.h5   a Keras weights-only HDF5 file (root `layer_names`, per-layer
                  `weight_names`, datasets <layer>/<layer>/<weight>:0) keyed by
                  Keras's layer and weight names, with random weights and random
                  BatchNormalization statistics, top included;
  ref_<case>.bin  scripts/fixture_io.py's format: `input` (N, H, W, 3), `features`
                  (the base without top, NHWC) and `top` (class probabilities).

The reference is an independent PyTorch network in float64 holding the same
weights: torchvision's own model where it is Keras's network, with each
difference between the two named where the model is built and changed there
and nowhere else; a module written here from Keras's source where torchvision
has none (ResNetV2). Weights go from Keras layouts to PyTorch's (HWIO ->
OIHW, Dense IO -> OI).

usage: gen_zoo_ref.py OUTDIR [CASE ...]
       gen_zoo_ref.py OUTDIR --serve   (cases named on stdin, tests/oracle.h)
"""
import math
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402

N = 2
CLASSES = 10

# case: (architecture, input size, seed); sizes are each model's minimum or
# close to it, so the suite stays quick.
CASES = {
    "vgg19_32": ("vgg19", 32, 11),
    "resnet101_32": ("resnet101", 32, 12),
    "resnet152_32": ("resnet152", 32, 13),
    "resnet50v2_32": ("resnet50v2", 32, 14),
    "resnet101v2_32": ("resnet101v2", 32, 15),
    "resnet152v2_32": ("resnet152v2", 32, 16),
    "densenet121_32": ("densenet121", 32, 17),
    "densenet169_32": ("densenet169", 32, 18),
    "densenet201_32": ("densenet201", 32, 19),
    "inceptionv3_75": ("inceptionv3", 75, 20),
    "xception_71": ("xception", 71, 21),
    "efficientnetb0_32": ("efficientnetb0", 32, 22),
    "efficientnetb3_33": ("efficientnetb3", 33, 23),
    "efficientnetb7_32": ("efficientnetb7", 32, 24),
    "mobilenetv3small_32": ("mobilenetv3small", 32, 25),
    "mobilenetv3large_35": ("mobilenetv3large", 35, 26),
    "convnexttiny_32": ("convnexttiny", 32, 27),
    "convnextsmall_32": ("convnextsmall", 32, 28),
    "convnextbase_32": ("convnextbase", 32, 29),
}


class Keras:
    """The weights in Keras's names and layouts, drawn as PyTorch modules get them."""

    def __init__(self, rng):
        self.rng = rng
        self.layers = {}  # name -> [(weight name, float32 array)]
        self.outer = {}  # inner layer name -> the nested model's name holding it

    def normal(self, shape, std):
        return self.rng.normal(0.0, std, shape).astype(np.float32)

    def uniform(self, shape, lo, hi):
        return self.rng.uniform(lo, hi, shape).astype(np.float32)

    def conv(self, name, conv, bias=None, scale=1.0):
        """A Conv2D (HWIO kernel) into torch's OIHW conv; returns its bias
        (Keras has one where torch's conv has none: it folds into a BN below)."""
        o, i, kh, kw = conv.weight.shape
        k = self.normal((kh, kw, i, o), scale * math.sqrt(2.0 / (kh * kw * i)))
        conv.weight.data = torch.from_numpy(k).permute(3, 2, 0, 1).double().contiguous()
        ws = [("kernel", k)]
        b = None
        if bias:
            b = self.uniform((o,), -0.1, 0.1)
            ws.append(("bias", b))
            if conv.bias is not None:
                conv.bias.data = torch.from_numpy(b).double()
        self.layers[name] = ws
        return b

    def dwconv(self, name, conv):
        """A DepthwiseConv2D (kh, kw, C, 1) into torch's grouped (C, 1, kh, kw)."""
        c, _, kh, kw = conv.weight.shape
        k = self.normal((kh, kw, c, 1), math.sqrt(2.0 / (kh * kw)))
        conv.weight.data = torch.from_numpy(k).permute(2, 3, 0, 1).double().contiguous()
        self.layers[name] = [("depthwise_kernel", k)]

    def sepconv(self, name, dw, pw):
        """A SeparableConv2D: depthwise (kh, kw, C, 1) and pointwise (1, 1, C, F), no bias."""
        c, _, kh, kw = dw.weight.shape
        f = pw.weight.shape[0]
        d = self.normal((kh, kw, c, 1), math.sqrt(2.0 / (kh * kw)))
        p = self.normal((1, 1, c, f), math.sqrt(2.0 / c))
        dw.weight.data = torch.from_numpy(d).permute(2, 3, 0, 1).double().contiguous()
        pw.weight.data = torch.from_numpy(p).permute(3, 2, 0, 1).double().contiguous()
        self.layers[name] = [("depthwise_kernel", d), ("pointwise_kernel", p)]

    def conv_linear(self, name, lin):
        """A 1x1 Conv2D with bias (1, 1, I, O) that torch holds as a Linear (O, I)."""
        o, i = lin.weight.shape
        k = self.normal((1, 1, i, o), math.sqrt(2.0 / i))
        b = self.uniform((o,), -0.1, 0.1)
        lin.weight.data = torch.from_numpy(k[0, 0]).t().double().contiguous()
        lin.bias.data = torch.from_numpy(b).double()
        self.layers[name] = [("kernel", k), ("bias", b)]

    def normalization(self, name, c):
        """An adapted Normalization: mean, variance and count; returns (mean, variance)."""
        mean = self.uniform((c,), 60.0, 180.0)
        var = self.uniform((c,), 2000.0, 6000.0)
        self.layers[name] = [("mean", mean), ("variance", var), ("count", np.array(0, np.float32))]
        return torch.from_numpy(mean).double(), torch.from_numpy(var).double()

    def bn(self, name, bn, eps, gamma=(0.6, 1.4), fold_bias=None, scale=True):
        c = bn.num_features
        g = self.uniform((c,), *gamma)
        beta = self.uniform((c,), -0.2, 0.2)
        mean = self.uniform((c,), -0.3, 0.3)
        var = self.uniform((c,), 0.6, 1.6)
        bn.eps = eps
        bn.weight.data = torch.from_numpy(g if scale else np.ones(c, np.float32)).double()
        bn.bias.data = torch.from_numpy(beta).double()
        m = mean if fold_bias is None else mean - fold_bias
        bn.running_mean.data = torch.from_numpy(m).double()
        bn.running_var.data = torch.from_numpy(var).double()
        ws = ([("gamma", g)] if scale else []) + [("beta", beta), ("moving_mean", mean),
                                                  ("moving_variance", var)]
        self.layers[name] = ws

    def dense(self, name, lin, kernel_perm=None):
        o, i = lin.weight.shape
        k = self.normal((i, o), math.sqrt(1.0 / i))
        b = self.uniform((o,), -0.1, 0.1)
        w = torch.from_numpy(k).t()
        if kernel_perm is not None:
            w = kernel_perm(w)
        lin.weight.data = w.double().contiguous()
        lin.bias.data = torch.from_numpy(b).double()
        self.layers[name] = [("kernel", k), ("bias", b)]

    def layer_norm(self, name, ln):
        """A LayerNormalization (gamma, beta) into torch's LayerNorm or LayerNorm2d."""
        c = ln.weight.shape[0]
        g = self.uniform((c,), 0.6, 1.4)
        b = self.uniform((c,), -0.2, 0.2)
        ln.weight.data = torch.from_numpy(g).double()
        ln.bias.data = torch.from_numpy(b).double()
        self.layers[name] = [("gamma", g), ("beta", b)]

    def nest(self, outer, inner):
        """Keras saves a nested model's layers in one group named after the
        model, each weight named outer/inner/weight:0."""
        for n in inner:
            self.outer[n] = outer

    def write(self, path):
        groups = {}  # group name -> [(weight path, array)], in the layers' order
        for name, ws in self.layers.items():
            g = self.outer.get(name)
            prefix = "%s/%s" % (g, name) if g else name
            groups.setdefault(g or name, []).extend(("%s/%s:0" % (prefix, w), a) for w, a in ws)
        with h5py.File(path, "w") as f:
            f.attrs["layer_names"] = np.array([n.encode() for n in groups])
            f.attrs["backend"] = b"tensorflow"
            f.attrs["keras_version"] = b"2.11.0"
            for name, ws in groups.items():
                grp = f.create_group(name)
                grp.attrs["weight_names"] = np.array([w.encode() for w, _ in ws])
                for w, a in ws:
                    grp.create_dataset(w, data=a)


def nhwc(t):
    return t.permute(0, 2, 3, 1).numpy()


# ------------------------------------------------------------ VGG19


def vgg19(kw, size):
    """torchvision's vgg19. Differences from Keras's VGG19, changed here:
    torchvision pools the features to 7x7 (AdaptiveAvgPool2d) before its
    classifier and flattens channels first; Keras flattens the last pool's
    output (NHWC) directly. The reference drops the adaptive pool and sizes
    fc1 for the real feature map, with fc1's rows permuted to NCHW order."""
    m = torchvision.models.vgg19(num_classes=CLASSES).double().eval()
    convs = [i for i, l in enumerate(m.features) if isinstance(l, nn.Conv2d)]
    per_block = [2, 2, 4, 4, 4]
    j = 0
    for b, n in enumerate(per_block, 1):
        for k in range(1, n + 1):
            kw.conv("block%d_conv%d" % (b, k), m.features[convs[j]], bias=True)
            j += 1
    s = size // 32
    m.avgpool = nn.Identity()
    m.classifier[0] = nn.Linear(512 * s * s, 4096).double()

    def nhwc_rows(w):  # (4096, H*W*C in NHWC order) -> (4096, C*H*W)
        return w.reshape(4096, s, s, 512).permute(0, 3, 1, 2).reshape(4096, -1)

    kw.dense("fc1", m.classifier[0], nhwc_rows)
    kw.dense("fc2", m.classifier[3])
    kw.dense("predictions", m.classifier[6])

    def run(x):
        feats = m.features(x)
        return feats, torch.softmax(m(x), dim=1)

    return run


# ------------------------------------------------------------ ResNet (v1)


def resnet(kw, depth):
    """torchvision's resnet101/152. Differences from Keras's ResNet, changed
    here: torchvision is ResNet v1.5 (the stride of a stage's first block on
    its 3x3 conv2), Keras v1 (on the first 1x1): the strides move to conv1;
    torchvision's BatchNormalization epsilon is 1e-5, Keras's 1.001e-5; Keras's
    convolutions have biases, torchvision's none: each bias folds exactly into
    the moving mean of the BatchNormalization after it (mean - bias)."""
    m = getattr(torchvision.models, "resnet%d" % depth)(num_classes=CLASSES).double().eval()
    eps = 1.001e-5
    b = kw.conv("conv1_conv", m.conv1, bias=True)
    kw.bn("conv1_bn", m.bn1, eps, fold_bias=b)
    for st, layer in enumerate([m.layer1, m.layer2, m.layer3, m.layer4]):
        for i, blk in enumerate(layer):
            p = "conv%d_block%d" % (st + 2, i + 1)
            if blk.conv2.stride != (1, 1):
                blk.conv1.stride, blk.conv2.stride = blk.conv2.stride, (1, 1)
            if blk.downsample is not None:
                b = kw.conv(p + "_0_conv", blk.downsample[0], bias=True)
                kw.bn(p + "_0_bn", blk.downsample[1], eps, gamma=(0.1, 0.3), fold_bias=b)
            b = kw.conv(p + "_1_conv", blk.conv1, bias=True)
            kw.bn(p + "_1_bn", blk.bn1, eps, fold_bias=b)
            b = kw.conv(p + "_2_conv", blk.conv2, bias=True)
            kw.bn(p + "_2_bn", blk.bn2, eps, fold_bias=b)
            b = kw.conv(p + "_3_conv", blk.conv3, bias=True)
            kw.bn(p + "_3_bn", blk.bn3, eps, gamma=(0.1, 0.3), fold_bias=b)
    kw.dense("predictions", m.fc)

    def run(x):
        y = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        y = m.layer4(m.layer3(m.layer2(m.layer1(y))))
        return y, torch.softmax(m(x), dim=1)

    return run


# ------------------------------------------------------------ ResNetV2 (written here)


class PreactBlock(nn.Module):
    """Keras's block2: BN-ReLU first; the stride on the padded 3x3 conv; an
    identity shortcut of a strided block is a 1x1 max pool (a subsampling)."""

    def __init__(self, cin, filters, stride, conv_shortcut):
        super().__init__()
        self.stride = stride
        self.preact_bn = nn.BatchNorm2d(cin)
        self.conv0 = nn.Conv2d(cin, 4 * filters, 1, stride) if conv_shortcut else None
        self.conv1 = nn.Conv2d(cin, filters, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters)
        self.conv2 = nn.Conv2d(filters, filters, 3, stride, bias=False)
        self.bn2 = nn.BatchNorm2d(filters)
        self.conv3 = nn.Conv2d(filters, 4 * filters, 1)

    def forward(self, x):
        pre = F.relu(self.preact_bn(x))
        if self.conv0 is not None:
            short = self.conv0(pre)
        else:
            short = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        y = F.relu(self.bn1(self.conv1(pre)))
        y = F.relu(self.bn2(self.conv2(F.pad(y, (1, 1, 1, 1)))))
        return short + self.conv3(y)


class ResNetV2(nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2)
        stages, cin = [], 64
        for st, (f, n) in enumerate(zip([64, 128, 256, 512], blocks)):
            stride = 2 if st < 3 else 1
            stage = []
            for b in range(n):
                stage.append(PreactBlock(cin, f, stride if b == n - 1 else 1, b == 0))
                cin = 4 * f
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.post_bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, CLASSES)

    def features(self, x):
        y = self.conv1(F.pad(x, (3, 3, 3, 3)))
        # Keras pads pool1 with zeros (there is no ReLU before it in V2).
        y = F.max_pool2d(F.pad(y, (1, 1, 1, 1)), 3, 2)
        return F.relu(self.post_bn(self.stages(y)))


def resnet_v2(kw, depth):
    blocks = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}[depth]
    m = ResNetV2(blocks).double().eval()
    eps = 1.001e-5
    kw.conv("conv1_conv", m.conv1, bias=True)
    for st, stage in enumerate(m.stages):
        for i, blk in enumerate(stage):
            p = "conv%d_block%d" % (st + 2, i + 1)
            kw.bn(p + "_preact_bn", blk.preact_bn, eps)
            if blk.conv0 is not None:
                kw.conv(p + "_0_conv", blk.conv0, bias=True)
            kw.conv(p + "_1_conv", blk.conv1)
            kw.bn(p + "_1_bn", blk.bn1, eps)
            kw.conv(p + "_2_conv", blk.conv2)
            kw.bn(p + "_2_bn", blk.bn2, eps)
            # Small residual branches keep a 50-block stack out of overflow.
            kw.conv(p + "_3_conv", blk.conv3, bias=True, scale=0.2)
    kw.bn("post_bn", m.post_bn, eps)
    kw.dense("predictions", m.fc)

    def run(x):
        feats = m.features(x)
        return feats, torch.softmax(m.fc(feats.mean(dim=(2, 3))), dim=1)

    return run


# ------------------------------------------------------------ DenseNet


def densenet(kw, depth):
    """torchvision's densenet121/169/201, the same network as Keras's but for
    BatchNormalization's epsilon (torchvision 1e-5, Keras 1.001e-5), set here."""
    m = getattr(torchvision.models, "densenet%d" % depth)(num_classes=CLASSES).double().eval()
    eps = 1.001e-5
    f = m.features
    kw.conv("conv1/conv", f.conv0)
    kw.bn("conv1/bn", f.norm0, eps)
    for k in range(1, 5):
        block = getattr(f, "denseblock%d" % k)
        for i, layer in enumerate(block.values(), 1):
            p = "conv%d_block%d" % (k + 1, i)
            kw.bn(p + "_0_bn", layer.norm1, eps)
            kw.conv(p + "_1_conv", layer.conv1)
            kw.bn(p + "_1_bn", layer.norm2, eps)
            kw.conv(p + "_2_conv", layer.conv2)
        if k < 4:
            t = getattr(f, "transition%d" % k)
            kw.bn("pool%d_bn" % (k + 1), t.norm, eps)
            kw.conv("pool%d_conv" % (k + 1), t.conv)
    kw.bn("bn", f.norm5, eps)
    kw.dense("predictions", m.classifier)

    def run(x):
        return F.relu(f(x)), torch.softmax(m(x), dim=1)

    return run


# ------------------------------------------------------------ InceptionV3


class AvgPoolExcludingPad:
    """torch.nn.functional for torchvision's inception module, with its
    average pools excluding the padding as Keras's 'same' pooling does."""

    def __getattr__(self, name):
        return getattr(F, name)

    @staticmethod
    def avg_pool2d(x, kernel_size, stride=None, padding=0, **kw):
        return F.avg_pool2d(x, kernel_size, stride, padding, count_include_pad=False)


def inception_v3(kw):
    """torchvision's inception_v3 (no aux logits, no transform_input).
    Differences from Keras's InceptionV3, changed here: the branch average
    pools of torchvision count the zero padding (count_include_pad), Keras's
    'same' pools do not; BatchNormalization has no scale (gamma 1) in Keras.
    Keras names every conv2d_bn automatically in creation order, which is
    torchvision's module order."""
    import torchvision.models.inception as tvi
    tvi.F = AvgPoolExcludingPad()
    m = torchvision.models.inception_v3(num_classes=CLASSES, aux_logits=False, init_weights=False,
                                        transform_input=False).double().eval()
    k = 0
    for mod in m.modules():
        if isinstance(mod, tvi.BasicConv2d):
            suffix = "_%d" % k if k else ""
            kw.conv("conv2d" + suffix, mod.conv)
            kw.bn("batch_normalization" + suffix, mod.bn, 1e-3, scale=False)
            k += 1
    kw.dense("predictions", m.fc)

    def features(x):
        for name in ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
                     "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]:
            x = getattr(m, name)(x)
        return x

    def run(x):
        return features(x), torch.softmax(m(x), dim=1)

    return run


# ------------------------------------------------------------ Xception (written here)


def tf_same(x, k, s, value=0.0):
    """TF's 'same' padding: the odd row/column goes after."""
    h, w = x.shape[2], x.shape[3]
    ph = max((-(-h // s) - 1) * s + k - h, 0)
    pw = max((-(-w // s) - 1) * s + k - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=value)


class Sep(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.pw(self.dw(x))


class Xception(nn.Module):
    """Keras's Xception from its source: entry flow, 8 middle blocks, exit flow."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 32, 3, 2, bias=False), nn.BatchNorm2d(32)
        self.c2, self.b2 = nn.Conv2d(32, 64, 3, bias=False), nn.BatchNorm2d(64)
        self.entry = nn.ModuleList()
        cin = 64
        for f1, f2 in [(128, 128), (256, 256), (728, 728)]:
            self.entry.append(nn.ModuleDict(dict(
                res=nn.Conv2d(cin, f2, 1, 2, bias=False), res_bn=nn.BatchNorm2d(f2),
                s1=Sep(cin, f1), b1=nn.BatchNorm2d(f1), s2=Sep(f1, f2), b2=nn.BatchNorm2d(f2))))
            cin = f2
        self.middle = nn.ModuleList(
            nn.ModuleList([nn.ModuleDict(dict(s=Sep(728, 728), b=nn.BatchNorm2d(728))) for _ in range(3)])
            for _ in range(8))
        self.exit = nn.ModuleDict(dict(
            res=nn.Conv2d(728, 1024, 1, 2, bias=False), res_bn=nn.BatchNorm2d(1024),
            s1=Sep(728, 728), b1=nn.BatchNorm2d(728), s2=Sep(728, 1024), b2=nn.BatchNorm2d(1024)))
        self.s14a, self.b14a = Sep(1024, 1536), nn.BatchNorm2d(1536)
        self.s14b, self.b14b = Sep(1536, 2048), nn.BatchNorm2d(2048)
        self.fc = nn.Linear(2048, CLASSES)

    @staticmethod
    def down(blk, x, first):
        res = blk["res_bn"](blk["res"](x))  # 1x1 stride 2 'same': no padding
        y = x if first else F.relu(x)
        y = blk["b1"](blk["s1"](y))
        y = blk["b2"](blk["s2"](F.relu(y)))
        y = F.max_pool2d(tf_same(y, 3, 2, -math.inf), 3, 2)
        return y + res

    def features(self, x):
        x = F.relu(self.b1(self.c1(x)))
        x = F.relu(self.b2(self.c2(x)))
        for i, blk in enumerate(self.entry):
            x = self.down(blk, x, i == 0)
        for blk in self.middle:
            y = x
            for step in blk:
                y = step["b"](step["s"](F.relu(y)))
            x = x + y
        x = self.down(self.exit, x, False)
        x = F.relu(self.b14a(self.s14a(x)))
        return F.relu(self.b14b(self.s14b(x)))


def xception(kw):
    m = Xception().double().eval()
    eps = 1e-3
    kw.conv("block1_conv1", m.c1)
    kw.bn("block1_conv1_bn", m.b1, eps)
    kw.conv("block1_conv2", m.c2)
    kw.bn("block1_conv2_bn", m.b2, eps)
    # Keras creates the unnamed projections before each block's separable convolutions.
    blocks = [(2, m.entry[0]), (3, m.entry[1]), (4, m.entry[2]), (13, m.exit)]
    for k, (b, blk) in enumerate(blocks):
        kw.conv("conv2d" + ("_%d" % k if k else ""), blk["res"])
        kw.bn("batch_normalization" + ("_%d" % k if k else ""), blk["res_bn"], eps, gamma=(0.2, 0.5))
        kw.sepconv("block%d_sepconv1" % b, blk["s1"].dw, blk["s1"].pw)
        kw.bn("block%d_sepconv1_bn" % b, blk["b1"], eps)
        kw.sepconv("block%d_sepconv2" % b, blk["s2"].dw, blk["s2"].pw)
        kw.bn("block%d_sepconv2_bn" % b, blk["b2"], eps, gamma=(0.2, 0.5))
    for i, blk in enumerate(m.middle):
        for j, step in enumerate(blk, 1):
            kw.sepconv("block%d_sepconv%d" % (i + 5, j), step["s"].dw, step["s"].pw)
            kw.bn("block%d_sepconv%d_bn" % (i + 5, j), step["b"], eps, gamma=(0.2, 0.5) if j == 3 else (0.6, 1.4))
    kw.sepconv("block14_sepconv1", m.s14a.dw, m.s14a.pw)
    kw.bn("block14_sepconv1_bn", m.b14a, eps)
    kw.sepconv("block14_sepconv2", m.s14b.dw, m.s14b.pw)
    kw.bn("block14_sepconv2_bn", m.b14b, eps)
    kw.dense("predictions", m.fc)

    def run(x):
        f = m.features(x)
        return f, torch.softmax(m.fc(f.mean(dim=(2, 3))), dim=1)

    return run


# ------------------------------------------------------------ EfficientNet, MobileNetV3


def keras_pad_strided(model, stem_same=False):
    """torchvision pads strided convolutions symmetrically ((k - 1) / 2 each
    side); Keras puts the odd row/column after: correct_pad's ZeroPadding2D
    before a 'valid' convolution, or TF's 'same' (the MobileNetV3 stem). Those
    convolutions lose their padding here and a hook pads them as Keras does."""
    for conv in model.modules():
        if isinstance(conv, nn.Conv2d) and conv.stride == (2, 2):
            k = conv.kernel_size[0]
            conv.padding = (0, 0)

            def hook(mod, args, k=k):
                x = args[0]
                c = k // 2
                ah, aw = 1 - x.shape[2] % 2, 1 - x.shape[3] % 2
                return (F.pad(x, (c - aw, c, c - ah, c)),)

            conv.register_forward_pre_hook(hook)


def efficientnet(kw, variant):
    """torchvision's efficientnet_bN. Differences from Keras's EfficientNetBN,
    changed here: Keras's model starts with Rescaling(1/255) and an adapted
    Normalization, torchvision's with the stem convolution (the reference
    applies them); strided convolutions' padding (keras_pad_strided);
    BatchNormalization epsilon 1e-3 set on every layer."""
    m = getattr(torchvision.models, "efficientnet_b%d" % variant)(num_classes=CLASSES).double().eval()
    keras_pad_strided(m)
    eps = 1e-3
    mean, var = kw.normalization("normalization", 3)
    f = m.features
    kw.conv("stem_conv", f[0][0])
    kw.bn("stem_bn", f[0][1], eps)
    for i in range(1, 8):
        for j, blk in enumerate(f[i]):
            p = "block%d%s_" % (i, chr(97 + j))
            layers = list(blk.block)
            if len(layers) == 4:
                kw.conv(p + "expand_conv", layers[0][0])
                kw.bn(p + "expand_bn", layers[0][1], eps)
                layers = layers[1:]
            kw.dwconv(p + "dwconv", layers[0][0])
            kw.bn(p + "bn", layers[0][1], eps)
            kw.conv(p + "se_reduce", layers[1].fc1, bias=True)
            kw.conv(p + "se_expand", layers[1].fc2, bias=True)
            kw.conv(p + "project_conv", layers[2][0])
            kw.bn(p + "project_bn", layers[2][1], eps, gamma=(0.2, 0.5))
    kw.conv("top_conv", f[8][0])
    kw.bn("top_bn", f[8][1], eps)
    kw.dense("predictions", m.classifier[1])

    def stem(x):
        x = x / 255.0
        return (x - mean[None, :, None, None]) / torch.sqrt(var)[None, :, None, None]

    def run(x):
        x = stem(x)
        return f(x), torch.softmax(m(x), dim=1)

    return run


def mobilenet_v3(kw, large):
    """torchvision's mobilenet_v3_small/large. Differences from Keras's
    MobileNetV3, changed here: Keras's Rescaling(1/127.5, -1) in front (the
    reference applies it), strided convolutions' padding (keras_pad_strided);
    epsilon 1e-3 set. torchvision's classifier Linear layers are Keras's 1x1
    Conv_2 and Logits on the pooled (1, 1, C) features."""
    m = getattr(torchvision.models, "mobilenet_v3_%s" % ("large" if large else "small"))(
        num_classes=CLASSES).double().eval()
    keras_pad_strided(m)
    eps = 1e-3
    f = m.features
    kw.conv("Conv", f[0][0])
    kw.bn("Conv/BatchNorm", f[0][1], eps)
    for i in range(1, len(f) - 1):
        p = "expanded_conv_%d/" % (i - 1) if i > 1 else "expanded_conv/"
        layers = list(f[i].block)
        if i > 1:
            kw.conv(p + "expand", layers[0][0])
            kw.bn(p + "expand/BatchNorm", layers[0][1], eps)
            layers = layers[1:]
        kw.dwconv(p + "depthwise", layers[0][0])
        kw.bn(p + "depthwise/BatchNorm", layers[0][1], eps)
        layers = layers[1:]
        if len(layers) == 2:
            kw.conv(p + "squeeze_excite/Conv", layers[0].fc1, bias=True)
            kw.conv(p + "squeeze_excite/Conv_1", layers[0].fc2, bias=True)
            layers = layers[1:]
        kw.conv(p + "project", layers[0][0])
        kw.bn(p + "project/BatchNorm", layers[0][1], eps, gamma=(0.3, 0.6))
    kw.conv("Conv_1", f[-1][0])
    kw.bn("Conv_1/BatchNorm", f[-1][1], eps)
    kw.conv_linear("Conv_2", m.classifier[0])
    kw.conv_linear("Logits", m.classifier[3])

    def run(x):
        x = x / 127.5 - 1.0
        return f(x), torch.softmax(m(x), dim=1)

    return run


# ------------------------------------------------------------ ConvNeXt


def convnext(kw, variant):
    """torchvision's convnext_tiny/small/base, Keras's network but for three
    things, applied here: Keras's model starts with a Normalization by
    ImageNet's mean and variance in pixels (PreStem; the reference applies
    it), and without top ends with an unnamed LayerNormalization (epsilon
    1e-6) over the channels of the features, which torchvision's `features`
    lacks (applied too, with its own weights); torchvision's classifier
    normalises the pooled 1x1 map (LayerNorm2d) where Keras pools, then
    normalises: the same function. Keras's stem and downsamplers are nested
    Sequential models, whose weights the file holds in nested groups as Keras
    writes them. The layer scales are drawn far from Keras's 1e-6 start, so
    every block's branch shows in the output."""
    m = getattr(torchvision.models, "convnext_%s" % variant)(num_classes=CLASSES).double().eval()
    name = "convnext_" + variant
    f = m.features
    kw.conv(name + "_stem_conv", f[0][0], bias=True)
    kw.layer_norm(name + "_stem_layernorm", f[0][1])
    kw.nest(name + "_stem", [name + "_stem_conv", name + "_stem_layernorm"])
    for st in range(4):
        if st > 0:
            d = f[2 * st]
            ln, conv = "%s_downsampling_layernorm_%d" % (name, st - 1), "%s_downsampling_conv_%d" % (name, st - 1)
            kw.layer_norm(ln, d[0])
            kw.conv(conv, d[1], bias=True)
            kw.nest("%s_downsampling_block_%d" % (name, st - 1), [ln, conv])
        for j, blk in enumerate(f[2 * st + 1]):
            p = "%s_stage_%d_block_%d" % (name, st, j)
            b = blk.block
            kw.conv(p + "_depthwise_conv", b[0], bias=True)
            kw.layer_norm(p + "_layernorm", b[2])
            kw.dense(p + "_pointwise_conv_1", b[3])
            kw.dense(p + "_pointwise_conv_2", b[5])
            g = kw.uniform((blk.layer_scale.shape[0],), 0.1, 0.5)
            blk.layer_scale.data = torch.from_numpy(g).double().reshape(-1, 1, 1)
            kw.layers[p + "_layer_scale"] = [("gamma", g)]
    kw.layer_norm(name + "_head_layernorm", m.classifier[0])
    kw.dense(name + "_head_dense", m.classifier[2])
    c = f[-1][-1].block[0].out_channels
    last = nn.LayerNorm(c, eps=1e-6).double()
    kw.layer_norm("layer_normalization", last)
    mean = torch.tensor([0.485 * 255, 0.456 * 255, 0.406 * 255], dtype=torch.float32).double()
    var = torch.tensor([(0.229 * 255) ** 2, (0.224 * 255) ** 2, (0.225 * 255) ** 2],
                       dtype=torch.float32).double()

    def run(x):
        x = (x - mean[None, :, None, None]) / torch.sqrt(var)[None, :, None, None]
        feats = last(f(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return feats, torch.softmax(m(x), dim=1)

    return run


# ------------------------------------------------------------ main


def build(arch, kw, size):
    if arch == "vgg19":
        return vgg19(kw, size)
    if arch.startswith("densenet"):
        return densenet(kw, int(arch[8:]))
    if arch == "inceptionv3":
        return inception_v3(kw)
    if arch == "xception":
        return xception(kw)
    if arch.startswith("efficientnetb"):
        return efficientnet(kw, int(arch[-1]))
    if arch.startswith("convnext"):
        return convnext(kw, arch[8:])
    if arch.startswith("mobilenetv3"):
        return mobilenet_v3(kw, arch.endswith("large"))
    if arch.startswith("resnet") and arch.endswith("v2"):
        return resnet_v2(kw, int(arch[6:-2]))
    if arch.startswith("resnet"):
        return resnet(kw, int(arch[6:]))
    raise ValueError(arch)


def make_case(out, case):
    arch, size, seed = CASES[case]
    torch.manual_seed(seed)
    rng = np.random.RandomState(seed)
    kw = Keras(rng)
    run = build(arch, kw, size)
    # ConvNeXt normalises pixels itself: give it pixels.
    hi = 255.0 if arch.startswith("convnext") else 1.0
    x = rng.uniform(-1.0 if hi == 1.0 else 0.0, hi, (N, size, size, 3)).astype(np.float32)
    with torch.no_grad():
        feats, top = run(torch.from_numpy(x).double().permute(0, 3, 1, 2))
    kw.write(os.path.join(out, "ref_%s.h5" % case))
    write_fixture(os.path.join(out, "ref_%s.bin" % case),
                  {"input": x, "features": nhwc(feats), "top": top.numpy()})


def serve(out):
    """tests/oracle.h's protocol: "ready", then "ok" or "error MESSAGE" for
    each case named on stdin (one process for the suite: importing torch costs
    about as much as a small case)."""
    print("ready", flush=True)
    for line in sys.stdin:
        try:
            make_case(out, line.strip())
            print("ok", flush=True)
        except Exception as e:  # an unknown case, a failed write: the test names it
            print("error", repr(e).replace("\n", " "), flush=True)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    torch.set_num_threads(2)
    if sys.argv[2:] == ["--serve"]:
        serve(out)
        return
    for case in sys.argv[2:] or list(CASES):
        make_case(out, case)


if __name__ == "__main__":
    main()
