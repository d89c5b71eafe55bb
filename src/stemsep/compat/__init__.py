"""Drop-in replacements for other projects' Python APIs, built on stemsep (``compat.spleeter``)."""
