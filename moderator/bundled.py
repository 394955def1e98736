"""What ships with the package besides code: the default model and policy, and what ``moderator
demo`` needs (the local broker script and the labelled examples).

In a wheel they are package data under ``moderator/_bundled/`` (copied there by setup.py's build
step from ``models/default``, ``policies/default.yaml``, ``deploy/local/kafka.sh`` and
``examples/``, which stay where training, calibration and the tests use them); in a checkout or an
editable install they are read where they are. So ``moderator scan``, ``run`` and ``demo`` work with
no path set, wherever the package is installed. The model knows pictograms only
(models/default/README.md): production sets its own.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
BUNDLED = PACKAGE / "_bundled"
CHECKOUT = PACKAGE.parent


def installed() -> bool:
    """Whether this is a wheel's copy (package data present) rather than a checkout."""
    return (BUNDLED / "model" / "manifest.json").is_file()


def model_dir() -> Path:
    """The default model's directory: the wheel's copy, else the checkout's ``models/default``."""
    return BUNDLED / "model" if installed() else CHECKOUT / "models" / "default"


def policy_path() -> Path:
    """The default policy file: the wheel's copy, else the checkout's ``policies/default.yaml``."""
    return BUNDLED / "policies" / "default.yaml" if installed() else CHECKOUT / "policies" / "default.yaml"


def kafka_script() -> Path:
    """``kafka.sh``, the local broker of the demo and the tests."""
    return BUNDLED / "kafka.sh" if installed() else CHECKOUT / "deploy" / "local" / "kafka.sh"


def examples_dir() -> Path:
    """The labelled example pictograms (``labels.csv``, ``images/``) the demo sends."""
    return BUNDLED / "examples" if installed() else CHECKOUT / "examples"


def work_dir() -> Path:
    """Where the demo and the local broker keep files: the checkout's ``.cache``, or for a wheel
    (whose directory may not be writable) ``$XDG_CACHE_HOME/moderator`` (``~/.cache/moderator``)."""
    if not installed():
        return CHECKOUT / ".cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "moderator"
