"""Attacks: FGSM and PGD (sensitivity), and the invariance attack of Tramèr et al. (core.attacks.invariance)."""

from core.attacks.base import Attack
from core.attacks.fgsm import FGSM
from core.attacks.pgd import PGD

__all__ = ["Attack", "FGSM", "PGD"]
