"""Reports: a detection matrix (or one run) as one self-contained HTML page, a Markdown
summary for CI and the results as JSON (:func:`testbed.report.writer.write_report`).

``model`` (what is shown, as data), ``plots`` (SVG charts), ``html`` (the page),
``markdown`` (the CI job summary), ``writer`` (the directory).
"""
