"""Release work: lint, breaking-change gate, version bump, release builds, publishing.

These modules read the project (proto/, configs, packages/) and its git history and never call
back into generation: a release ships exactly what `nox -s generate` left in packages/.
"""
