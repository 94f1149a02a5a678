"""Provenance: what produced a result (the spec, assay's version, when, the input's
fingerprint, the git commit of the working directory), recorded by every job and kept by
:meth:`Report.save` / :func:`assay.load`."""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Provenance"]

#: Version of the provenance dict (``Provenance.to_dict()["format"]``).
FORMAT = 1


@dataclass(frozen=True)
class Provenance:
    """What produced a result. ``rep.provenance`` of every :class:`~assay.Report` and
    :class:`~assay.Comparison`; saved with it (:meth:`~assay.Report.save`).

    Attributes
    ----------
    spec : dict or None
        The job's :class:`~assay.Spec` as :meth:`~assay.Spec.to_dict` writes it (every
        option; ``assay.Spec.from_dict(p.spec)`` rebuilds it). None for a result built
        without a spec (a discovery: its options are in ``extra["discover_slices"]``).
    assay_version : str
        The version of assay that computed the result.
    created : str
        When the result was computed: ISO 8601 in UTC (``2026-12-07T12:00:00.123456+00:00``).
    rows : int or None
        Rows read (``None`` where not known).
    schema : list of (str, str) or None
        The input's columns that the job read, as (name, Arrow type); None where the
        input's schema was not known before the pass.
    content_hash : str or None
        With ``fingerprint="content"``: a 64-bit hash (16 hex digits) of the values of every
        column the job read, row by row in input order, computed in the pass (no second
        read). It depends on the values and their order, not on how the rows were split
        into batches or shards (a split job's shards combine theirs). None otherwise.
    git_commit : str or None
        The commit checked out in the working directory's git repository (read from
        ``.git``, without running git), or None outside a repository.
    kind : str
        What produced the result: ``"evaluate"``, ``"compare"``, ``"finalize"``,
        ``"reliability"`` or ``"discovery"``.
    extra : dict
        Anything else a kind records (a discovery's options).
    """

    spec: dict[str, Any] | None
    assay_version: str
    created: str
    rows: int | None = None
    schema: list[tuple[str, str]] | None = None
    content_hash: str | None = None
    git_commit: str | None = None
    kind: str = "evaluate"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The provenance as a JSON-ready dict (with a ``"format"`` version).

        >>> import assay, numpy as np
        >>> rep = assay.evaluate({"y": np.array([0, 1]), "p": np.array([0.2, 0.9])},
        ...                      label="y", score="p", metrics=["accuracy"])
        >>> d = rep.provenance.to_dict()
        >>> d["format"], d["input"]["rows"], d["spec"]["label"]
        (1, 2, 'y')
        """
        return {
            "format": FORMAT,
            "kind": self.kind,
            "assay_version": self.assay_version,
            "created": self.created,
            "input": {
                "rows": self.rows,
                "schema": None if self.schema is None else [list(c) for c in self.schema],
                "content_hash": self.content_hash,
            },
            "git_commit": self.git_commit,
            "spec": self.spec,
            **({"extra": dict(self.extra)} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Provenance:
        """The provenance of :meth:`to_dict`'s output."""
        from .errors import StateFormatError

        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise StateFormatError(
                f"not an assay provenance of format {FORMAT}: "
                f"{d.get('format') if isinstance(d, Mapping) else type(d).__name__!r}")
        inp = d.get("input") or {}
        schema = inp.get("schema")
        return cls(
            spec=d.get("spec"),
            assay_version=str(d.get("assay_version")),
            created=str(d.get("created")),
            rows=inp.get("rows"),
            schema=None if schema is None else [(str(n), str(t)) for n, t in schema],
            content_hash=inp.get("content_hash"),
            git_commit=d.get("git_commit"),
            kind=str(d.get("kind", "evaluate")),
            extra=dict(d.get("extra") or {}),
        )

    def __str__(self) -> str:
        lines = [
            f"assay {self.assay_version}, {self.kind} at {self.created}",
            f"input: {self.rows if self.rows is not None else '?'} rows"
            + (f", {len(self.schema)} columns read" if self.schema is not None else "")
            + (f", content hash {self.content_hash}" if self.content_hash else ""),
            f"git commit: {self.git_commit or '(not in a git repository)'}",
        ]
        return "\n".join(lines)


def now() -> str:
    """The current time, ISO 8601 in UTC."""
    return _dt.datetime.now(_dt.UTC).isoformat()


def git_commit(start: str | os.PathLike[str] | None = None) -> str | None:
    """The commit checked out in the git repository holding ``start`` (default: the working
    directory), read from its ``.git`` files (HEAD, the ref it names, packed-refs): no git
    process is started. None outside a repository or when the files cannot be read."""
    try:
        here = Path(start if start is not None else os.getcwd()).resolve()
    except OSError:
        return None
    for d in (here, *here.parents):
        dot = d / ".git"
        try:
            if dot.is_file():  # a worktree or submodule: "gitdir: <path>"
                text = dot.read_text(encoding="utf-8").strip()
                if not text.startswith("gitdir:"):
                    return None
                gitdir = (d / text[len("gitdir:"):].strip()).resolve()
            elif dot.is_dir():
                gitdir = dot
            else:
                continue
            return _head_commit(gitdir)
        except OSError:
            return None
    return None


def _head_commit(gitdir: Path) -> str | None:
    head = (gitdir / "HEAD").read_text(encoding="utf-8").strip()
    if not head.startswith("ref:"):
        return head if _is_sha(head) else None
    ref = head[len("ref:"):].strip()
    # A linked worktree keeps its refs in the common directory.
    common = gitdir
    if (gitdir / "commondir").is_file():
        common = (gitdir / (gitdir / "commondir").read_text(encoding="utf-8").strip()).resolve()
    for base in (gitdir, common):
        f = base / ref
        if f.is_file():
            sha = f.read_text(encoding="utf-8").strip()
            return sha if _is_sha(sha) else None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == ref and _is_sha(parts[0]):
                return parts[0]
    return None  # an unborn branch


def _is_sha(s: str) -> bool:
    return len(s) in (40, 64) and all(c in "0123456789abcdef" for c in s)
