"""Framework integrations (optional extras): each module imports its framework at the top and
is imported only by users of that framework.

* :mod:`mis.integrations.lightning` — :class:`~mis.integrations.lightning.RQCallback`, r_Q
  for a PyTorch Lightning ``Trainer`` (``pip install "mis[lightning]"``).
"""
