"""The science of a run, in the process that runs it: the worker, the execution of a run, evaluation, robustness
(AutoAttack, curves, checks), PCA and the invariance sets. The only part of amltui/ allowed to import torch."""
