"""Hot reload of the bank directory: when a bank file is added, removed or changed (polled by
name, size, modification time and inode, so a 500 MB bank is not re-read every few seconds) or
on SIGHUP, every bank is loaded again beside the ones serving and swapped in with one reference
assignment. Any problem keeps the old banks serving (``moderator_banks_stale`` = 1) and is
logged as ``FILE:LINE: message``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from moderator.errors import BankError
from moderator.hashing.bankfile import bank_name
from moderator.hashing.banks import Banks, load_banks
from moderator.reloading import Reloader

log = logging.getLogger(__name__)


class BanksTarget(Protocol):
    """Where banks are served from (the pipeline's ``Processor``)."""

    banks: Banks | None

    def set_banks(self, banks: Banks) -> None: ...


class BanksReporter(Protocol):
    """Who is told how reloads went (the telemetry side's ``Metrics``)."""

    def banks_reloaded(self, banks: Banks) -> None: ...

    def banks_reload_failed(self) -> None: ...


class BankReloader(Reloader):
    name = "bank-reload"

    def __init__(self, directory: Path, target: BanksTarget, reporter: BanksReporter, interval_s: float, max_entries: int) -> None:
        self.directory = Path(directory)
        self.target = target
        self.reporter = reporter
        self.max_entries = max_entries
        super().__init__(interval_s)

    def fingerprint(self) -> tuple | None:
        try:
            entries = []
            for p in sorted(self.directory.iterdir()):
                if bank_name(p) is None:
                    continue
                st = p.stat()
                entries.append((p.name, st.st_size, st.st_mtime_ns, st.st_ino))
            return tuple(entries)
        except OSError:
            return None

    def reload(self) -> bool:
        """Load and swap; returns False (old banks kept) on any error, whatever it is."""
        old = self.target.banks
        was = old.version if old is not None else "none"
        try:
            banks = load_banks(self.directory, self.max_entries)
        except Exception as exc:
            self.reporter.banks_reload_failed()
            if isinstance(exc, BankError):
                log.error("hash bank reload failed; still serving banks %s:\n%s", was, exc)
            else:
                log.exception("hash bank reload failed unexpectedly; still serving banks %s: %s: %s", was, type(exc).__name__, exc)
            return False
        self.target.set_banks(banks)
        self.reporter.banks_reloaded(banks)
        log.info("hash banks reloaded: %s -> %s (%d banks, %d hashes)", was, banks.version, len(banks.banks), banks.entries)
        return True
