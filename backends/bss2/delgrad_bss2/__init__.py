"""delgrad-bss2: an emulated BrainScaleS-2 chip as a delgrad backend ("bss2-emulator").

See docs/bss2.md: the job model, mapping, imperfections, delay elements and calibration.
"""

from importlib.metadata import PackageNotFoundError, version

from delgrad_bss2._backend import Bss2EmulatorBackend
from delgrad_bss2._cache import CACHE_ENV, cache_directory
from delgrad_bss2._chip import EMULATOR_VERSION, Chip
from delgrad_bss2._config import ChipConfig

try:
    __version__ = version("delgrad-bss2")  # (the installed distribution's: one source, its pyproject.toml)
except PackageNotFoundError:  # (a source tree on sys.path, not installed)
    __version__ = "unknown"
__all__ = ["Bss2EmulatorBackend", "ChipConfig", "Chip", "CACHE_ENV", "cache_directory", "EMULATOR_VERSION",
           "__version__"]
