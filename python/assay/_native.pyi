"""Type stubs of the compiled extension ``assay._native`` (checked with ``mypy.stubtest``)."""

from typing import Any, final

__all__ = [
    "evaluate",
    "accumulate",
    "finalize",
    "merge_states",
    "state_from_bytes",
    "state_from_blocks",
    "device_layout",
    "replicate_draws",
    "State",
    "bin_edges",
    "bin_edge_ranks",
    "bin_edges_by_rank",
    "norm_cdf",
    "isotonic_fit",
    "platt_fit",
    "temperature_fit",
    "histogram_fit",
    "default_metrics",
    "metric_registry",
    "regression_metrics",
    "calibration_metrics",
    "discover_slices",
    "slice_rows",
    "bin_labels",
    "higher_is_better",
    "metric_from_counts",
    "metric_name",
    "max_threads",
    "_panic_for_tests",
    "__version__",
    "DEBUG_BUILD",
    "STATE_FORMAT_VERSION",
    "DEFAULT_MAX_RUNS",
]

__version__: str
DEBUG_BUILD: bool
STATE_FORMAT_VERSION: int
DEFAULT_MAX_RUNS: int

_Job = tuple[
    str,  # label
    str,  # score
    str | None,  # weight
    float,  # threshold
    list[list[tuple[str, list[float] | None]]],  # slice specs (bin edges resolved)
    list[str],  # metrics (canonical names)
    int,  # min_slice_size
    str,  # nan_policy
    tuple[str, int],  # auc: ("exact", 0) | ("binned", bins) | ("sketch", max runs)
    int | None,  # n_threads
    tuple[int, float, str, int, str | None] | None,  # interval
    tuple[str, list[tuple[str, str]]] | None,  # compare
    tuple[int, str] | None,  # calibration
    float | None,  # reliability
    list[str | None] | None,  # slice_only
    str,  # task
    float,  # power (Tweedie)
    tuple[str, str] | None,  # prediction interval columns (lower, upper)
    int | None,  # max_slices (None: no limit)
    # multiclass: (class names, their integer values or None, each model's K score columns
    # (empty: a list column), normalize) or None
    tuple[list[str], list[int] | None, list[list[str]], str] | None,
    tuple[str, str, str, str] | None,  # ranking: (query column, gain, ties, empty) or None
    bool,  # fingerprint: the pass hashes the values of the columns it reads
]
# (table, notes, rows, dropped, [(table, notes) of each other model], comparison or None,
#  reliability or None, [layout batch of each model's report: each row's spec and, with
#  bootstrap replicates, every metric's replicate values], [(name, table) of the task family's
#  own tables: multiclass per_class and confusion], (the columns read as (name, Arrow type) or
#  None for a finalized state, the content hash or None))
_Result = tuple[Any, Any, int, int, list[tuple[Any, Any]], Any | None, Any | None, list[Any],
                list[tuple[str, Any]], tuple[list[tuple[str, str]] | None, int | None]]

def evaluate(data: Any, job: _Job, rows_hint: int | None = None) -> _Result:
    """Runs one evaluation (or comparison) job over an Arrow stream."""

def accumulate(data: Any, job: _Job, spec_json: str, row_offset: int = 0,
               rows_hint: int | None = None) -> State:
    """Reads an Arrow stream into a mergeable partial state of `job` (`rows_hint`: the rows of
    an in-memory input, to reserve memory once)."""

def finalize(state: State, job: _Job) -> _Result:
    """The result of a partial state (the job must be the one its spec describes)."""

def merge_states(states: list[State]) -> State:
    """One new state holding all of `states` (merged in a canonical order)."""

def state_from_bytes(data: bytes) -> State:
    """The state of `State.to_bytes()`'s bytes (StateFormatError when they are not one); the
    state's kept rows are read in place and keep `data` alive."""

def device_layout(job: _Job) -> tuple[str | None, list[tuple[str, float]]]:
    """What the torch path cannot compute for `job` (None when it can) and the layout of the
    blocks it fills."""

def state_from_blocks(keys: Any, job: _Job, spec_json: str,
                      blocks: list[list[dict[str, bytes]]],
                      rank: list[tuple[bytes, bytes, bytes, bytes, list[bytes], bool]],
                      rows: int,
                      dropped: int, max_weight: float | None, row_offset: int) -> State:
    """A partial state from blocks filled on a device (`assay.torch`); `keys` is an Arrow
    stream of one batch holding the occupied slices' values."""

def replicate_draws(seed: int, replicates: int, row_ids: bytes) -> tuple[bytes, bytes, bytes]:
    """Resampling keys, Poisson(1) draws and jackknife groups of `row_ids` (u64 bytes)."""

@final
class State:
    """A partial state: per-slice mergeable accumulators keyed by slice value."""

    @property
    def spec_json(self) -> str: ...
    @property
    def rows(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def row_ranges(self) -> list[tuple[int, int]]: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def format_version(self) -> int: ...
    def to_bytes(self) -> bytes: ...

def bin_edges(data: Any, column: str, n: int, strategy: str) -> list[float]:
    """Edges of `n` bins over column `column` of an Arrow stream."""

def bin_edge_ranks(count: int, n: int, strategy: str) -> list[int]:
    """The 0-based ranks (in ascending order of a column's `count` non-NaN values) of the
    order statistics that `n` bins of `strategy` read; see `bin_edges_by_rank`."""

def bin_edges_by_rank(
    column: str, n: int, strategy: str, count: int, infinite: bool, stats: dict[int, float]
) -> list[float]:
    """The edges `bin_edges` would place over a column of `count` non-NaN values, from its
    order statistics `stats` (rank -> value, at least the ranks of `bin_edge_ranks`);
    `infinite`: the column holds an infinite value. Edges computed by a distributed engine
    this way equal those of one process to the bit."""

def norm_cdf(values: list[float]) -> list[float]:
    """The standard normal CDF of each value (the engine's, through `erfc`)."""

def default_metrics() -> list[str]:
    """The names of the metrics computed when none are given, in report order."""

def metric_registry() -> list[tuple[str, str, str, bool | None, bool, str]]:
    """Every metric as (name, family, kind, higher_is_better, default, definition), in report
    order, then the patterns ``"f<beta>"``, ``"pinball@<q>"`` and ``"top_k_accuracy@<k>"``;
    kind is "confusion", "loss", "rank", "calibration", "moments" or "order"."""

def regression_metrics(
    y: list[float], p: list[float], w: list[float] | None = None, cuts: list[int] = ...
) -> list[tuple[str, float | None, str | None]]:
    """The regression family's metrics of rows (y, p, w), cut at ``cuts`` into states merged
    left to right, as (name, value, note): the note says why a value is undefined (None).
    For tests."""

def max_threads() -> int:
    """The most worker threads a job may use (`n_threads`): 4 x the available cores."""

def _panic_for_tests(job: bool = False) -> None:
    """Panics in the function body, or in a job's worker thread (`job=True`): tests that a
    panic surfaces as `AssayError("internal error, please report: ...")`."""

def discover_slices(
    data: Any,
    features: list[tuple[str, list[float] | None]],
    error: tuple[str, str | None, str | None, str | None],
    threshold: float,
    k: int,
    max_level: int,
    min_support: int,
    alpha: float,
    method: str,
    beam_width: int,
    max_values: int,
    dedupe: bool,
    fdr: float,
    nan_policy: str,
    n_threads: int | None,
    paired: tuple[str, float, str] | None = None,
    multiclass: tuple[list[str], list[int] | None, str] | None = None,
    fingerprint: bool = False,
) -> tuple[Any, int, int, float, int, tuple[list[tuple[str, str]], int | None]]:
    """Searches for the slices where the model's error is much higher than average; with
    `paired=(reference column, ci, correction)`, where it is higher than the reference
    model's (`discover_regressions`); `multiclass=(class names, their integer values,
    normalize)`: the scores are a list column of K probabilities."""

def slice_rows(
    data: Any, slices: list[list[tuple[str, list[float] | None]]]
) -> list[tuple[Any, list[tuple[int, str]]]]:
    """Each slice spec's slice id of every row, and the slices present in report order."""

def metric_from_counts(
    name: str, tp: list[float], fp: list[float], tn: list[float], fn_: list[float]
) -> list[float | None]:
    """A confusion-count metric of each (tp, fp, tn, fn), None where undefined."""

def bin_labels(edges: list[float]) -> list[str]:
    """The slice labels of the bins of `edges`, then below-range and above-range."""

def higher_is_better(name: str) -> bool | None:
    """Whether a larger value of the metric is better (None: it has no direction)."""

def calibration_metrics() -> list[str]:
    """The names of the calibration metrics (computed only when asked for)."""

def metric_name(name: str) -> str:
    """Canonical name of a metric (validates it)."""

def isotonic_fit(
    scores: Any, labels: Any, weights: Any | None, increasing: bool
) -> tuple[list[float], list[float]]:
    """Isotonic fit: (distinct x ascending, fitted values)."""

def platt_fit(
    scores: Any, labels: Any, weights: Any | None, smoothing: bool
) -> tuple[float, float]:
    """Platt fit: (a, b) of sigmoid(a * logit(s) + b)."""

def temperature_fit(scores: Any, labels: Any, weights: Any | None) -> float:
    """Temperature fit: T of sigmoid(logit(s) / T)."""

def histogram_fit(scores: Any, labels: Any, weights: Any | None, n_bins: int) -> list[float]:
    """Histogram-binning fit: the calibrated value of each of `n_bins` equal-width bins."""
