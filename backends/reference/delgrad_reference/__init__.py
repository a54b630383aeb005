"""delgrad-reference: the exact ideal model as a delgrad backend (registered as "reference")."""

from delgrad_reference._backend import ReferenceBackend

__all__ = ["ReferenceBackend"]
