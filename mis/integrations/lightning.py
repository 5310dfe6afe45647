"""r_Q for PyTorch Lightning: :class:`RQCallback` (``pip install "mis[lightning]"``).

Aubinais et al. (2025) ship r_Q as a Lightning wrapper; this is the same idea as a callback
that records the quantized validation losses of the ``LightningModule`` after every training
(or validation) epoch with :class:`mis.RQRecorder`::

    from mis.integrations.lightning import RQCallback

    cb = RQCallback(["sign", "ternary-50", "4bit"], x_val, y_val)
    trainer = lightning.pytorch.Trainer(max_epochs=50, callbacks=[cb])
    trainer.fit(module, loader)
    cb.rq()                                   # {"sign": ..., "ternary-50": ..., "4bit": ...}
    cb.recorder.save("runs/rq", run=seed)     # many runs in one run store

The module's ``forward`` must return the logits (or the regression output for
``loss="mse"``).
"""

from __future__ import annotations

import lightning.pytorch as pl

from mis._validation import string
from mis.train.rq_recorder import RQRecorder

__all__ = ["RQCallback"]


class RQCallback(pl.Callback):
    """Record a checkpoint of :class:`mis.RQRecorder` at the end of every epoch.

    Parameters
    ----------
    quantizers, x_val, y_val, loss, params, batch_size
        As :class:`mis.RQRecorder`. ``x_val`` and ``y_val`` are moved to the module's device
        on the first checkpoint.
    on : {"train_epoch_end", "validation_epoch_end"}
        When a checkpoint is recorded: after every training epoch (default; always runs), or
        after every validation loop (the paper's "each validation step"; not during the
        sanity check).
    store, run : optional
        With a store (a :class:`~mis.store.RunStore` or a directory), the recorded arrays are
        saved there as run ``run`` when training ends.

    Attributes
    ----------
    recorder : RQRecorder
    """

    def __init__(
        self,
        quantizers,
        x_val,
        y_val,
        *,
        loss: str = "cross_entropy",
        params="all",
        batch_size: int = 4096,
        on: str = "train_epoch_end",
        store=None,
        run: int = 0,
    ):
        super().__init__()
        self.on = string(on, "on", ("train_epoch_end", "validation_epoch_end"))
        self._args = dict(quantizers=quantizers, loss=loss, params=params, batch_size=batch_size)
        self.recorder = RQRecorder(x_val=x_val, y_val=y_val, **self._args)
        self.store, self.run = store, run

    def _record(self, pl_module) -> None:
        if self.recorder.x_val.device != pl_module.device and self.recorder.n_checkpoints == 0:
            self.recorder = RQRecorder(
                x_val=self.recorder.x_val.to(pl_module.device),
                y_val=self.recorder.y_val.to(pl_module.device),
                **self._args,
            )
        was_training = pl_module.training
        pl_module.eval()
        try:
            self.recorder.record(pl_module)
        finally:
            pl_module.train(was_training)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.on == "train_epoch_end":
            self._record(pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.on == "validation_epoch_end" and not trainer.sanity_checking:
            self._record(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.store is not None and self.recorder.n_checkpoints:
            self.recorder.save(self.store, run=self.run)

    def rq(self):
        """r_Q per quantizer of the run trained so far (:meth:`mis.RQRecorder.rq`)."""
        return self.recorder.rq()
