"""The Compact-Transformers zoo computes what the official code computes.

``Official*`` below is an independent reference of the official layers, written from reading
SHI-Labs/Compact-Transformers (``src/utils/tokenizer.py``: ``Tokenizer``; ``src/utils/transformers.py``:
``Attention``, ``TransformerEncoderLayer``, ``TransformerClassifier`` with ``seq_pool`` and the sine table;
``src/vit.py``, ``src/cvt.py``, ``src/cct.py``: how ViT-Lite, CVT and CCT configure them). It is an eval-mode
reference: dropout and drop-path are identity there, so only their rates are compared. The weights of a
reference at random init, with every LayerNorm, bias and the class embedding perturbed (so every tensor
matters), are copied by structure into the zoo spec's build; the logits must agree within 1e-4.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sdpnet
from sdpnet.blocks import EncoderBlock, PosEmbed, SeqPool
from sdpnet.models.builder import SpecNet, count_params
from sdpnet.spec import load_spec, resolve
from sdpnet.spec.errors import SpecError

ZOO = Path(__file__).resolve().parents[1] / "specs" / "zoo"
TOLERANCE = 1e-4


# --- the reference, from the official source -------------------------------------------------------------

class OfficialTokenizer(nn.Module):
    """``Tokenizer``: ``layers`` x (conv k x k, ReLU or nothing, 3x3/2 max-pool or nothing), then the grid
    flattened to a sequence; widths 3 -> 64 ... -> ``out_ch``; convolution weights Kaiming-normal."""

    def __init__(self, kernel: int, stride: int, padding: int, layers: int, out_ch: int, *, relu: bool,
                 max_pool: bool, bias: bool) -> None:
        super().__init__()
        widths = [3] + [64] * (layers - 1) + [out_ch]
        self.conv_layers = nn.Sequential(*(
            nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=bias),
                          nn.ReLU() if relu else nn.Identity(),
                          nn.MaxPool2d(3, 2, 1) if max_pool else nn.Identity())
            for c_in, c_out in zip(widths, widths[1:])))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_layers(x).flatten(2).transpose(1, 2)  # (B, HW, C), raster order


class OfficialAttention(nn.Module):
    """``Attention``: qkv without bias, explicit softmax(q k^T / sqrt(d)), dropout on the weights and after proj."""

    def __init__(self, dim: int, heads: int, attention_dropout: float, projection_dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_drop = nn.Dropout(attention_dropout)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(projection_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        weights = self.attn_drop((q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1))
        return self.proj_drop(self.proj((weights @ v).transpose(1, 2).reshape(B, N, C)))


class OfficialEncoderLayer(nn.Module):
    """``TransformerEncoderLayer``: after the attention residual the stream itself is replaced by ``norm1`` of it."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float, attention_dropout: float,
                 drop_path_rate: float) -> None:
        super().__init__()
        self.pre_norm = nn.LayerNorm(dim)
        self.self_attn = OfficialAttention(dim, heads, attention_dropout, dropout)
        self.linear1 = nn.Linear(dim, hidden)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.linear2 = nn.Linear(hidden, dim)
        self.dropout2 = nn.Dropout(dropout)
        self.drop_path_rate = drop_path_rate  # identity in eval mode

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        src = self.norm1(src + self.self_attn(self.pre_norm(src)))
        return src + self.dropout2(self.linear2(self.dropout1(F.gelu(self.linear1(src)))))


def official_sine(length: int, dim: int) -> torch.Tensor:
    """``sinusoidal_embedding``: angles pos / 10000^(2 floor(i/2) / dim) as Python floats, stored as float32,
    then sine on the even columns and cosine on the odd ones; (1, length, dim)."""
    rows = [[pos / math.pow(10000.0, (i - i % 2) / dim) for i in range(dim)] for pos in range(length)]
    angle = torch.tensor(rows, dtype=torch.float32)
    even = torch.arange(dim) % 2 == 0
    return torch.where(even, angle.sin(), angle.cos())[None]


class OfficialClassifier(nn.Module):
    """``TransformerClassifier``: [class embedding,] tokens + positions, dropout, encoder layers, LayerNorm,
    then sequence pooling or the class token, then ``fc``. Linear layers trunc-normal std 0.02 with zero bias,
    LayerNorms weight 1 bias 0, learnable positions trunc-normal std 0.2, class embedding zero."""

    def __init__(self, seq_len: int, dim: int, layers: int, heads: int, mlp_ratio: float, num_classes: int,
                 seq_pool: bool, positional: str, dropout: float = 0.0, attention_dropout: float = 0.1,
                 stochastic_depth: float = 0.1) -> None:
        super().__init__()
        self.seq_pool = seq_pool
        if seq_pool:
            self.attention_pool = nn.Linear(dim, 1)
        else:
            seq_len += 1
            self.class_emb = nn.Parameter(torch.zeros(1, 1, dim))
        if positional == "learnable":
            self.positional_emb = nn.Parameter(nn.init.trunc_normal_(torch.zeros(1, seq_len, dim), std=0.2))
        else:
            self.positional_emb = nn.Parameter(official_sine(seq_len, dim), requires_grad=False)
        self.dropout = nn.Dropout(dropout)
        rates = torch.linspace(0, stochastic_depth, layers, device="cpu").tolist()
        self.blocks = nn.ModuleList(OfficialEncoderLayer(dim, heads, int(dim * mlp_ratio), dropout,
                                                         attention_dropout, r) for r in rates)
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.seq_pool:
            x = torch.cat([self.class_emb.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.dropout(x + self.positional_emb)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        if self.seq_pool:
            x = (self.attention_pool(x).softmax(dim=1).transpose(1, 2) @ x).squeeze(1)
        else:
            x = x[:, 0]
        return self.fc(x)


class Official(nn.Module):
    """``ViTLite`` / ``CVT`` / ``CCT``: a tokenizer, then the classifier."""

    def __init__(self, tokenizer: OfficialTokenizer, classifier: OfficialClassifier) -> None:
        super().__init__()
        self.tokenizer, self.classifier = tokenizer, classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.tokenizer(x))


@dataclass(frozen=True)
class Config:
    """A registered official model: ``vit_7_4_32``, ``cvt_7_4_32``, ``cct_7_3x1_32``, ``cct_14_7x2_224``."""

    family: str  # vit, cvt, cct
    layers: int
    heads: int
    mlp_ratio: float
    dim: int
    kernel: int
    img_size: int
    num_classes: int
    conv_layers: int = 1


CONFIGS = {
    "vit_lite_7_4": Config("vit", 7, 4, 2, 256, 4, 32, 10),
    "cvt_7_4": Config("cvt", 7, 4, 2, 256, 4, 32, 10),
    "cct_7_3x1_32": Config("cct", 7, 4, 2, 256, 3, 32, 10, conv_layers=1),
    "cct_14_7x2_224": Config("cct", 14, 6, 3, 384, 7, 224, 1000, conv_layers=2),
}


def official(name: str, positional: str = "learnable") -> Official:
    """The official model ``name`` at its registered defaults (dropout 0, attention dropout 0.1, depth 0.1)."""
    c = CONFIGS[name]
    if c.family == "cct":  # conv layers with ReLU and max-pool, stride max(1, k // 2 - 1), padding max(1, k // 2)
        tokenizer = OfficialTokenizer(c.kernel, max(1, c.kernel // 2 - 1), max(1, c.kernel // 2), c.conv_layers,
                                      c.dim, relu=True, max_pool=True, bias=False)
    else:  # ViT-Lite and CVT: one patchifying conv with bias, no activation, no pooling
        tokenizer = OfficialTokenizer(c.kernel, c.kernel, 0, 1, c.dim, relu=False, max_pool=False, bias=True)
    seq_len = tokenizer(torch.zeros(1, 3, c.img_size, c.img_size)).shape[1]
    classifier = OfficialClassifier(seq_len, c.dim, c.layers, c.heads, c.mlp_ratio, c.num_classes,
                                    seq_pool=c.family != "vit", positional=positional)
    return Official(tokenizer, classifier)


# --- copying the weights across, by structure -------------------------------------------------------------

def _perturb(ref: Official, seed: int) -> None:
    """LayerNorm weights near 1 and biases, every bias and the class embedding made non-trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
            if isinstance(m, (nn.LayerNorm, nn.Linear)) and m.bias is not None:
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
        if hasattr(ref.classifier, "class_emb"):
            ref.classifier.class_emb.copy_(0.5 * torch.randn(ref.classifier.class_emb.shape, generator=g))


def _params(ours: nn.Module, ref: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(our tensor, reference tensor) for every parameter of two modules of the same layout."""
    a, b = dict(ours.named_parameters()), dict(ref.named_parameters())
    assert a.keys() == b.keys(), (type(ours).__name__, sorted(a), sorted(b))
    return [(a[k], b[k]) for k in a]


def copy_official(ref: Official, ours: SpecNet) -> None:
    """Fill ``ours`` with ``ref``'s weights; every learnable tensor of both is used exactly once."""
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    ref_convs = [m for m in ref.tokenizer.modules() if isinstance(m, nn.Conv2d)]
    our_convs = [m for m in ours.stem.modules() if isinstance(m, nn.Conv2d)]
    assert len(ref_convs) == len(our_convs)
    for a, b in zip(our_convs, ref_convs):
        pairs += _params(a, b)
    clf = ref.classifier
    pos = next(m for m in ours.modules() if isinstance(m, PosEmbed))
    table = clf.positional_emb
    if not clf.seq_pool:
        pairs.append((ours.cls_token, clf.class_emb))
        if isinstance(pos.cls_pos, nn.Parameter):
            pairs.append((pos.cls_pos, table[:, :1]))
        table = table[:, 1:]
    if isinstance(pos.pos_embed, nn.Parameter):
        gh, gw = pos.pos_embed.shape[-2:]
        pairs.append((pos.pos_embed, table.transpose(1, 2).reshape(1, -1, gh, gw)))
    encs = [m for m in ours.body if isinstance(m, EncoderBlock)]
    assert len(encs) == len(clf.blocks)
    for enc, blk in zip(encs, clf.blocks):
        for a, b in ((enc.norm1, blk.pre_norm), (enc.attn.qkv, blk.self_attn.qkv),
                     (enc.attn.proj, blk.self_attn.proj), (enc.norm2, blk.norm1), (enc.mlp.fc1, blk.linear1),
                     (enc.mlp.fc2, blk.linear2)):
            pairs += _params(a, b)
    final_norm = next(m for m in (*ours.pool.modules(), *ours.head.modules()) if isinstance(m, nn.LayerNorm))
    pairs += _params(final_norm, clf.norm)
    if clf.seq_pool:
        assert isinstance(ours.pool, SeqPool)
        pairs += _params(ours.pool.attention_pool, clf.attention_pool)
    pairs += _params(ours.get_classifier(), clf.fc)

    assert {id(a) for a, _ in pairs} == {id(p) for p in ours.parameters()}, "a parameter of ours is not filled"
    assert len(pairs) == len(list(ours.parameters()))
    used = {id(b) for _, b in pairs if isinstance(b, nn.Parameter)}
    if clf.positional_emb.requires_grad:  # learnable: copied above through slices of the table
        used.add(id(clf.positional_emb))
    assert used == {id(p) for p in ref.parameters() if p.requires_grad}, "a reference parameter is not copied"
    with torch.no_grad():
        for a, b in pairs:
            a.copy_(b)


def _logit_gap(name: str, ours: SpecNet, positional: str = "learnable") -> tuple[float, torch.Tensor]:
    torch.manual_seed(0)
    ref = official(name, positional).eval()
    _perturb(ref, 1)
    copy_official(ref, ours)
    c = CONFIGS[name]
    x = torch.randn(2, 3, c.img_size, c.img_size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want, got = ref(x), ours.eval()(x)
    assert got.shape == want.shape == (2, c.num_classes)
    gap = (got - want).abs().max().item()
    print(f"{name} ({positional}): max |logit difference| {gap:.3g}, logit std {want.std().item():.3g}")
    return gap, want


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_zoo_logits_equal_official(name: str) -> None:
    """The zoo spec with the official model's (perturbed) random weights gives its logits within 1e-4."""
    gap, want = _logit_gap(name, sdpnet.build(ZOO / f"{name}.json"))
    assert want.std() > 0.1  # the logits are far from trivial
    assert gap <= TOLERANCE


SINE = {
    "vit_lite_7_4": "P4+CLS-POS(cls=true,sine=1)+ENCx7-TOKS+LIN",
    "cct_7_3x1_32": "CT3+POS(sine=1)-ENCx7-SEQPOOL+LIN(norm=none)",
}


@pytest.mark.parametrize("name", sorted(SINE))
def test_sine_variants_equal_official(name: str) -> None:
    """POS(sine=1) is the official fixed sine table (ViT-Lite: the class token takes position 0): vit_7_4_32_sine
    and cct_7_3x1_32_sine give the official logits within 1e-4; the table is not a parameter."""
    ours = sdpnet.build(ZOO / f"{name}.json", arch=SINE[name])
    gap, _ = _logit_gap(name, ours, "sine")
    assert gap <= TOLERANCE
    ref = official(name, "sine")
    assert count_params(ours) == sum(p.numel() for p in ref.parameters() if p.requires_grad)
    pos = next(m for m in ours.modules() if isinstance(m, PosEmbed))
    assert "pos_embed" not in dict(ours.named_parameters()) and pos.no_weight_decay_params == ()
    want = official_sine(ref.classifier.positional_emb.shape[1], CONFIGS[name].dim)
    got = pos.pos_embed.flatten(2).transpose(1, 2)
    if name == "vit_lite_7_4":
        got = torch.cat([pos.cls_pos, got], dim=1)
    assert torch.equal(got, want)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_parameter_counts(name: str) -> None:
    """Ours, the reference and the published count agree (tests/test_zoo.py holds the published ones)."""
    published = {"vit_lite_7_4": 3_716_874, "cvt_7_4": 3_716_619, "cct_7_3x1_32": 3_760_139,
                 "cct_14_7x2_224": 22_367_273}[name]
    with torch.device("meta"):
        assert count_params(sdpnet.build(ZOO / f"{name}.json")) == published
        assert count_params(official(name)) == published


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_official_defaults_are_set(name: str) -> None:
    """Attention dropout 0.1, no other dropout, and the official stochastic-depth rates linspace(0, 0.1, depth);
    eps 1e-5 in every LayerNorm, the CCT layout in every ENC."""
    with torch.device("meta"):
        ours, ref = sdpnet.build(ZOO / f"{name}.json"), official(name)
    encs = [m for m in ours.body if isinstance(m, EncoderBlock)]
    for enc, blk in zip(encs, ref.classifier.blocks, strict=True):
        assert enc.post_norm
        assert enc.attn.attn_drop.p == blk.self_attn.attn_drop.p == 0.1
        assert enc.attn.proj_drop.p == enc.mlp.drop1.p == enc.mlp.drop2.p == blk.dropout1.p == 0.0
        rates = [getattr(d, "drop_prob", 0.0) for d in (enc.drop_path1, enc.drop_path2)]  # Identity: 0
        assert rates == pytest.approx([blk.drop_path_rate] * 2, abs=1e-7)
    norms = [m for m in ours.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 * len(encs) + 1 and all(m.eps == 1e-5 for m in norms)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_official_init(name: str) -> None:
    """init=cct: positions trunc-normal std 0.2, class token zero, tokenizer convs Kaiming-normal
    (std sqrt(2 / fan_in)), Linear weights std 0.02 with zero bias, LayerNorms weight 1 bias 0."""
    torch.manual_seed(0)
    ours = sdpnet.build(ZOO / f"{name}.json")
    pos = next(m for m in ours.modules() if isinstance(m, PosEmbed))
    assert pos.pos_embed.std().item() == pytest.approx(0.2, rel=0.05)
    if CONFIGS[name].family == "vit":
        assert torch.equal(ours.cls_token, torch.zeros_like(ours.cls_token))
        assert pos.cls_pos.abs().max() > 0.05  # the class token's position is drawn with the table
    for conv in (m for m in ours.stem.modules() if isinstance(m, nn.Conv2d)):
        fan_in = conv.weight[0].numel()
        assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.1)
    for m in ours.modules():
        if isinstance(m, nn.Linear):
            assert m.bias is None or not m.bias.any()
            if m.weight.numel() >= 10_000:
                assert m.weight.std().item() == pytest.approx(0.02, rel=0.05)
        if isinstance(m, nn.LayerNorm):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and not m.bias.any()


def test_timm_init_is_still_the_default() -> None:
    """Without init=cct the same architecture keeps timm's init: positions std 0.02, class token drawn with std
    0.02, convolutions PyTorch's default (std 1 / sqrt(3 fan_in))."""
    torch.manual_seed(0)
    ours = sdpnet.build(ZOO / "vit_lite_7_4.json", init="timm")
    pos = next(m for m in ours.modules() if isinstance(m, PosEmbed))
    assert pos.pos_embed.std().item() == pytest.approx(0.02, rel=0.05)
    assert ours.cls_token.abs().max() > 0
    conv = ours.stem[0].proj
    assert conv.weight.std().item() == pytest.approx(1 / math.sqrt(3 * conv.weight[0].numel()), rel=0.1)


def test_attention_dropout_acts_in_training_only() -> None:
    """ENC(adrop=0.5): two training passes differ, eval passes are deterministic and equal the adrop=0 block."""
    torch.manual_seed(0)
    enc = EncoderBlock(32, num_heads=4, attn_drop=0.5, post_norm=True, eps=1e-5)
    plain = EncoderBlock(32, num_heads=4, post_norm=True, eps=1e-5)
    plain.load_state_dict(enc.state_dict())
    s = torch.randn(2, 10, 32)
    enc.train()
    assert not torch.equal(enc(s), enc(s))
    torch.testing.assert_close(enc.eval()(s), plain.eval()(s), rtol=0, atol=0)


@pytest.mark.parametrize("arch,hparams,needle", [
    ("P4+POS-ENC(adrop=1.5)-GAP+LIN", {}, "adrop"),
    ("P4+POS-ENC(pdrop=-0.1)-GAP+LIN", {}, "pdrop"),
    ("P4+POS-ENC(eps=0)-GAP+LIN", {}, "eps"),
    ("P4+POS-ENC-SEQPOOL(eps=1)+LIN", {}, "eps"),
    ("P4+POS(init=kaiming)-ENC-GAP+LIN", {}, "init"),
    ("P4+POS-ENC-GAP+LIN", {"init": "kaiming"}, "init"),
    ("P4+POS-ENC-GAP+LIN", {"ln_eps": -1.0}, "eps"),
])
def test_bad_values_are_refused(arch: str, hparams: dict, needle: str) -> None:
    """Out-of-range rates and eps, and unknown init schemes, are a SpecError naming the keyword."""
    with pytest.raises(SpecError, match=needle):
        resolve(load_spec(arch, dim=32, heads=2, img_size=32, **hparams))
