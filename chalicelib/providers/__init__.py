"""Providers: one package per external service, whole — client, error mapping, its own payload
shapes parsed into the mail models, and the proof of an uncertain outcome.

Layer rule: a provider imports ``mail`` and ``platform``, never ``handlers`` or another provider.
"""
