"""The offline machinery behind `python -m components`: Pulumi's mocks with a recording monitor
(mockrun.py), rendering a run to files (render.py), and the verbs (verbs.py). May import every
package of `components`."""
