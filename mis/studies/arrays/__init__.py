"""Commands on arrays a user already has (no training): ``mis rank`` (r_Q of quantizers,
ranked with significance) and ``mis lira`` (LiRA over a reference-layout directory or a run
store).

* :mod:`.rank` — :func:`load_rq`, :func:`run_rank`;
* :mod:`.lira` — :func:`run_lira`.
"""

from mis.studies.arrays.lira import run_lira
from mis.studies.arrays.rank import load_rq, rq_from_losses, run_rank

__all__ = ["load_rq", "rq_from_losses", "run_lira", "run_rank"]
