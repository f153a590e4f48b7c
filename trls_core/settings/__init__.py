"""The settings models: what each params.yaml section may hold (types and constraints).

params.yaml holds every value, defaults included; these models declare no
defaults of their own (``None`` only where it means "off" or "not given").
``trls_core.config`` assembles them into ``Params``; each dataset's section
model lives with its plugin in ``trls_core.datasets``.
"""
