"""Attacks: FGSM, FGSM-RS, PGD (sensitivity) and the invariance attack of Tramèr et al. (core.attacks.invariance)."""

from core.attacks.base import Attack
from core.attacks.fgsm import FGSM
from core.attacks.fgsm_rs import FGSMRS
from core.attacks.pgd import PGD
from core.attacks.training import TRAIN_ATTACKS, make_train_attack

__all__ = ["Attack", "FGSM", "FGSMRS", "PGD", "TRAIN_ATTACKS", "make_train_attack"]
