"""Typeset digits: a synthetic digit domain rendered from the fonts matplotlib ships (NumPy and Agg only).

Each digit is a font's glyph ("0" ... "9") turned into a vector path (``matplotlib.textpath.TextPath``),
jittered by a small random affine map (rotation, shear, aspect), drawn filled plus a random stroke
width (typeset strokes are thinner than pen strokes), rasterised antialiased by Agg and then
placed the way MNIST's digits were: scaled so that its larger side fits the 20x20 box, and moved
so that its centre of mass sits at the centre of the 28x28 image. White on black, in [0, 1], like
``companion.load_mnist``. These are the "simulator" of the SimGAN section: labelled for free, and
visibly not handwriting.

Everything is deterministic for a seed (its own NumPy generator; the global random state is never
touched) and works headless and offline. :func:`synthetic_digits` caches a rendering as an ``.npz``
beside a SHA-256 checksum, verified on every load.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from companion.validation import InputError, check_positive

SIDE = 28  # MNIST's image side
BOX = 20.0  # MNIST's digits were scaled so that their larger side fits a 20x20 box
# The fonts under matplotlib's mpl-data/fonts/ttf whose digits are drawn; display, symbol and
# old-style-figure fonts are left out (no digits, or digits that do not look like digits).
FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
)
ROTATION = 10.0  # degrees, either way
SHEAR = 0.2  # horizontal shear factor, either way
SCALE = 0.15  # aspect jitter (width x [0.85, 1.15]) and size jitter (larger side 20 x [0.85, 1])
SHIFT = 1.0  # pixels, either way, added after centring by the centre of mass
STROKE = 1.5  # extra outline width in pixels, drawn from [0, STROKE]
CACHE_VERSION = 1  # bump when the rendering changes, so old cache files are not taken for new ones


def font_path(font: str | os.PathLike) -> Path:
    """The file of ``font``: a name from :data:`FONTS` (or any file in matplotlib's ``fonts/ttf``), or a path."""
    import matplotlib

    given = Path(font)
    shipped = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / given.name
    path = given if given.is_file() else shipped
    if not path.is_file():
        raise InputError(
            f"font {str(font)!r} is neither a file nor one of matplotlib's fonts; pass names from FONTS "
            f"(e.g. {FONTS[0]!r}) or paths to .ttf files"
        )
    return path


@functools.lru_cache(maxsize=64)
def _glyphs(path: str) -> tuple:
    """The ten digit glyphs of the font at ``path`` as paths centred on their bounding box (100-unit size)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath
    from matplotlib.transforms import Affine2D

    font = FontProperties(fname=path)
    glyphs = []
    for digit in range(10):
        glyph = TextPath((0, 0), str(digit), size=100, prop=font)
        box = glyph.get_extents()
        if box.width <= 0 or box.height <= 0:
            raise InputError(f"the font {path} has no drawable digit {digit}; pick another font")
        centre = Affine2D().translate(-(box.x0 + box.x1) / 2, -(box.y0 + box.y1) / 2)
        glyphs.append(centre.transform_path(glyph))
    return tuple(glyphs)


def _rasterise(path, stroke: float) -> np.ndarray:
    """Ink coverage (28, 28) in [0, 1] of a filled path in pixel coordinates (y up), outlined ``stroke`` px wide."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.transforms import IdentityTransform

    renderer = RendererAgg(SIDE, SIDE, 72)  # 72 dpi: one point is one pixel
    gc = renderer.new_gc()
    gc.set_antialiased(True)
    gc.set_linewidth(stroke)
    gc.set_foreground((1.0, 1.0, 1.0), isRGBA=False)
    renderer.draw_path(gc, path, IdentityTransform(), (1.0, 1.0, 1.0))
    gc.restore()
    # Agg draws on a transparent canvas, so the alpha channel is the ink coverage (row 0 at the top).
    return np.asarray(renderer.buffer_rgba())[..., 3].astype(np.float32) / 255.0


def _centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(row, column) of the ink's centre of mass, in pixel-centre coordinates."""
    rows, cols = np.indices(image.shape)
    total = image.sum()
    return float((rows * image).sum() / total), float((cols * image).sum() / total)


def _render_one(glyph, rotation: float, shear: float, aspect: float, size: float, stroke: float, shift):
    from matplotlib.transforms import Affine2D

    jitter = Affine2D().scale(aspect, 1.0).skew(np.arctan(shear), 0.0).rotate_deg(rotation)
    path = jitter.transform_path(glyph)
    box = path.get_extents()
    # The larger side, outline included, fills ``size`` pixels of the 20x20 box.
    fit = (size - stroke) / max(box.width, box.height)
    middle = SIDE / 2
    path = (
        Affine2D()
        .translate(-(box.x0 + box.x1) / 2, -(box.y0 + box.y1) / 2)
        .scale(fit)
        .translate(middle, middle)
        .transform_path(path)
    )
    row, col = _centre_of_mass(_rasterise(path, stroke))
    # Move the centre of mass to the image centre (pixel-centre 13.5), plus the jitter; y points up.
    target = (SIDE - 1) / 2
    dx, dy = target + shift[0] - col, -(target + shift[1] - row)
    return _rasterise(Affine2D().translate(dx, dy).transform_path(path), stroke)


def _check_range(name: str, value: float, high: float | None = None) -> float:
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not number or not np.isfinite(value) or value < 0 or (high is not None and value >= high):
        limit = f" and < {high:g}" if high is not None else ""
        raise InputError(
            f"{name} must be a finite number >= 0{limit} (0 turns the jitter off), got {value!r}"
        )
    return float(value)


def check_labels(labels: object, n: int) -> np.ndarray:
    """``labels``: ``n`` integer digits 0-9 -> int64 ``(n,)``."""
    y = np.asarray(labels)
    if y.shape != (n,) or y.dtype.kind not in "iu":
        raise InputError(
            f"labels must be {n} integer digits, one per image (shape ({n},)), got dtype {y.dtype} and "
            f"shape {y.shape}; leave labels=None for a balanced mix"
        )
    if n and (y.min() < 0 or y.max() > 9):
        raise InputError(f"labels must be digits 0-9, got values from {y.min()} to {y.max()}")
    return y.astype(np.int64)


def render_digits(
    n: int,
    seed: int = 0,
    fonts: Sequence[str | os.PathLike] = FONTS,
    *,
    labels: np.ndarray | None = None,
    rotation: float = ROTATION,
    shear: float = SHEAR,
    scale: float = SCALE,
    shift: float = SHIFT,
    stroke: float = STROKE,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` typeset digits: ``(images (n, 28, 28) float32 in [0, 1], white on black; labels int64 (n,))``.

    Each image draws, from a generator seeded by ``seed``, a font out of ``fonts`` (names from
    :data:`FONTS` or paths to .ttf files), a rotation in +-``rotation`` degrees, a shear in
    +-``shear``, an aspect (width x [1 - scale, 1 + scale]), a size (larger side 20 x [1 - scale, 1]
    pixels, as MNIST's 20x20 box), an outline of [0, ``stroke``] pixels and, after centring the
    centre of mass in the 28x28 image as MNIST did, a shift of +-``shift`` pixels. ``labels=None``
    gives a balanced mix (each digit n/10 times, shuffled); otherwise the given digits are drawn.
    """
    check_positive("n", n, integer=True)
    from companion.training.loop import check_seed

    seed = check_seed(seed)
    if isinstance(fonts, (str, os.PathLike)) or not len(fonts):
        raise InputError(
            f"fonts must be a non-empty sequence of font names or paths (e.g. FONTS), got {fonts!r}"
        )
    paths = [str(font_path(font)) for font in fonts]
    rotation = _check_range("rotation", rotation, 180.0)
    shear = _check_range("shear", shear, 1.0)
    scale = _check_range("scale", scale, 0.5)
    shift = _check_range("shift", shift, 4.0)
    stroke = _check_range("stroke", stroke, 4.0)
    rng = np.random.default_rng([seed, int(n)])
    n = int(n)
    y = rng.permutation(np.arange(n) % 10) if labels is None else check_labels(labels, n)
    which = rng.integers(0, len(paths), n)
    angles = rng.uniform(-rotation, rotation, n)
    shears = rng.uniform(-shear, shear, n)
    aspects = rng.uniform(1 - scale, 1 + scale, n)
    sizes = BOX * rng.uniform(1 - scale, 1.0, n)
    strokes = rng.uniform(0.0, stroke, n)
    shifts = rng.uniform(-shift, shift, (n, 2))
    images = np.empty((n, SIDE, SIDE), np.float32)
    for i in range(n):
        glyph = _glyphs(paths[which[i]])[y[i]]
        images[i] = _render_one(glyph, angles[i], shears[i], aspects[i], sizes[i], strokes[i], shifts[i])
    return images, y.astype(np.int64)


# ---------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """Where :func:`synthetic_digits` keeps renderings: ``synthetic_digits`` inside the data cache
    (``$COMPANION_DATA_DIR`` or ``~/.cache/companion/mnist``, see :func:`companion.data.default_cache_dir`)."""
    from companion.data import default_cache_dir as data_cache_dir

    return data_cache_dir() / "synthetic_digits"


def _recipe_key(n: int, seed: int) -> str:
    """A short hash of everything the rendering depends on, so a changed recipe never reads an old file."""
    import matplotlib

    recipe = {
        "version": CACHE_VERSION,
        "n": n,
        "seed": seed,
        "fonts": FONTS,
        "jitter": [ROTATION, SHEAR, SCALE, SHIFT, STROKE],
        "matplotlib": matplotlib.__version__,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def synthetic_digits(
    n: int, seed: int = 0, cache_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`render_digits` ``(n, seed)`` with the default fonts and jitter, cached on disk.

    The first call renders and writes ``synthetic_n{n}_seed{seed}_{key}.npz`` into ``cache_dir``
    (default :func:`default_cache_dir`) with its SHA-256 in a ``.sha256`` file beside it; later
    calls verify the checksum and load. A file that fails the check (or lacks its checksum) is
    rendered again and rewritten, with a one-line warning.
    """
    from companion.training.atomic_files import atomic_write
    from companion.training.loop import check_seed

    check_positive("n", n, integer=True)
    n, seed = int(n), check_seed(seed)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if folder.exists() and not folder.is_dir():
        raise InputError(
            f"cache_dir {folder} is a file, not a folder; pass a folder (or None for the default)"
        )
    path = folder / f"synthetic_n{n}_seed{seed}_{_recipe_key(n, seed)}.npz"
    checksum = path.with_name(path.name + ".sha256")
    if path.is_file():
        stored = checksum.read_text().split()[0] if checksum.is_file() else ""
        if stored and stored == _sha256(path):
            with np.load(path) as data:
                return data["images"], data["labels"]
        warnings.warn(
            f"{path} does not match its checksum (damaged or edited); rendering it again",
            RuntimeWarning,
            stacklevel=2,
        )
    images, labels = render_digits(n, seed)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: np.savez_compressed(tmp, images=images, labels=labels), suffix=".npz")
    digest = _sha256(path)
    atomic_write(checksum, lambda tmp: tmp.write_text(f"{digest}  {path.name}\n"))
    return images, labels
