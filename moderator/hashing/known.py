"""What the banks say about one message, in the documented order (docs/policies.md#known-content):

1. **SHA-256, deny**: these exact bytes are known bad: the bank's action and category.
2. **SHA-256, allow**: these exact bytes were reviewed and allowed: allowed, whatever a near
   (PDQ) deny match or the classifier says. Exact beats near.
3. **PDQ, deny**: any scored frame within a deny bank's threshold (and of PDQ quality at or over
   the floor): the bank's action and category. With ``hashing.pdq_turns`` (the default) a frame
   is also looked up mirrored, flipped and turned (its dihedral hashes), so a mirrored or rotated
   repost of banked content still matches; the match names the turn. With
   ``hashing.pdq_trim_borders`` a frame with a uniform border is also looked up without it.
4. **PDQ, allow**: *every* scored frame, as it is (never turned or cut), matches an allow bank,
   no frame is under the quality floor, and no frame went unscored (``frames.overflow``):
   allowed. A known-good first frame cannot carry an animation through, nor can a known-good
   picture with flat frames added.
5. Otherwise the classifier decides alone.

At the same strength deny beats allow; among deny matches ``block`` beats ``review``, then the
smaller distance. A deny match whose action is ``block`` decides without the classifier (no
encoder time is spent); a ``review`` one still runs it, and the decision is the more severe of the
two, so a review bank can never lower what the classifier would have blocked.

An allow match still runs the classifier. An exact (SHA-256) allow overrides whatever it says; a
PDQ allow overrides at most what its bank's ``overrides`` says (``review`` by default, ``block``
when the operator opts in): a known-good picture with something small pasted in can stay within
distance 31 of it (measured: a pictogram over 10–15 % of a photo moved PDQ by as little as 8
bits), so by default a near copy can clear a review but not a block.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from moderator.hashing.banks import Banks, Match
from moderator.hashing.compute import TURN_WORDS, PdqHash, one_per_frame

_ACTION_RANK = {"block": 0, "review": 1, "allow": 2}


@dataclass(frozen=True)
class Known:
    kind: str  # deny | allow
    match: Match  # the deciding match
    matches: tuple[Match, ...]  # every match found (per hash at most banks.MAX_MATCHES), the deciding one first

    @property
    def overrides(self) -> str:
        """Allow: the most severe classifier decision it may override (every match it rests on must agree)."""
        if self.kind != "allow":
            return "allow"
        if self.match.hash_type == "sha256":
            return "block"
        return "block" if all(m.overrides == "block" for m in self.matches) else "review"

    @property
    def decides(self) -> bool:
        """True when no classifier is needed: a deny match that blocks."""
        return self.kind == "deny" and self.match.action == "block"

    @property
    def reason(self) -> str:
        m = self.match
        how = "exact sha256" if m.hash_type == "sha256" else f"pdq distance {m.distance}" + _how_found(m)
        if self.kind == "deny":
            return f"hash_match: {m.category} in bank {m.bank!r} ({how}): {m.action}"
        return f"hash_allow: allowed by bank {m.bank!r} ({how})"


def _how_found(m: Match) -> str:
    what = [w for w in ("without its border" if m.trimmed else "", TURN_WORDS[m.turn] if m.turn else "") if w]
    return f", the frame {' and '.join(what)}" if what else ""


def _best(matches: list[Match]) -> list[Match]:
    """Most severe first, then nearest, then the frame as it is before its trimmed or turned
    hashes; an entry found several ways for one frame (a symmetric picture) once, at its best."""
    ranked = sorted(matches, key=lambda m: (_ACTION_RANK[m.action], m.distance, m.trimmed, m.turn is not None, m.bank, m.line))
    seen: set[tuple] = set()
    out = []
    for m in ranked:
        key = (m.bank, m.line, m.hash_type, m.frame)
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out


def exact(banks: Banks | None, sha256: bytes) -> Known | None:
    """Steps 1 and 2: what the banks say about these exact bytes."""
    if banks is None:
        return None
    matches = banks.match_sha256(sha256)
    deny = _best([m for m in matches if m.kind == "deny"])
    if deny:
        return Known("deny", deny[0], tuple(deny + [m for m in matches if m.kind == "allow"]))
    if matches:
        return Known("allow", matches[0], tuple(matches))
    return None


def near(banks: Banks | None, frames: tuple[PdqHash, ...], quality_floor: int, overflow: bool) -> Known | None:
    """Steps 3 and 4: what the banks say about the scored frames' PDQ hashes."""
    if banks is None or not banks.pdq_entries or not frames:
        return None
    deny: list[Match] = []
    allowed_frames = 0
    allow: list[Match] = []
    rows = one_per_frame(frames)  # a frame's crops share its hash: looked up once
    for i in rows:
        pdq = frames[i]
        # The frame without its uniform border, as it is and turned: deny banks only. Its own
        # quality counts: a wide border flattens the whole frame's (a floor it must not hide under).
        inside = pdq.trimmed
        if inside is not None and inside.quality >= quality_floor and banks.deny_pdq_entries:
            found = [m for m in banks.match_pdq(inside, i) if m.kind == "deny"] + banks.match_turns(inside, i)
            deny.extend(dataclasses.replace(m, trimmed=True) for m in found)
        if pdq.quality < quality_floor:
            continue
        matches = banks.match_pdq(pdq, i)
        deny.extend(m for m in matches if m.kind == "deny")
        deny.extend(banks.match_turns(pdq, i))  # the frame mirrored and turned: deny banks only
        frame_allow = [m for m in matches if m.kind == "allow"]
        if frame_allow:
            allowed_frames += 1
            allow.extend(frame_allow)
    if deny:
        ranked = _best(deny)
        return Known("deny", ranked[0], tuple(ranked))
    if allow and allowed_frames == len(rows) and not overflow:
        ranked = sorted(allow, key=lambda m: (m.distance, m.bank, m.line))
        return Known("allow", ranked[0], tuple(ranked))
    return None


def combine(exact_known: Known | None, near_known: Known | None) -> Known | None:
    """The exact result before the near one (the order above), except that a near deny match
    that blocks outranks an exact one that only asks for review."""
    if exact_known is None:
        return near_known
    if exact_known.kind == "deny" and not exact_known.decides and near_known is not None and near_known.decides:
        return Known("deny", near_known.match, near_known.matches + exact_known.matches)
    return exact_known
