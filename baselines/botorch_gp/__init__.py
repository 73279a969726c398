"""BoTorch baselines: GP models (`models`), acquisition over candidate pools (`acquisition`) and the
optimizers behind the `Optimizer` interface (`optimizers`): `botorch-ei` and `botorch-mf`."""

from baselines.botorch_gp.optimizers import BoTorchEI, BoTorchMF

__all__ = ["BoTorchEI", "BoTorchMF"]
