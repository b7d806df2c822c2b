"""Helpers of the SpineMorph Slicer module.

Slicer-free, tested outside Slicer: ``client`` (the server's HTTP API), ``training`` (following a training job
without blocking), ``grid`` ((row, column) pixels of a 2D volume and RAS), ``records`` (segments to VerSe codes,
table rows, re-grading), ``markups`` (height lines in RAS), ``report`` (CSV, report, overlay PNG), ``sample`` (the
self-test's labelmap) and ``dependencies`` (standard library only).

MRML, no Qt (they run in Slicer and with PyPI's ``slicer-core``): ``nodes`` (nodes to arrays and back),
``measurement`` (the table and draggable height lines, kept in step), and two parts of the module's Logic:
``annotation`` (connect, next sample, auto-segment, submit, train) and ``files`` (a DICOM SR read back; CSV, report
and PNG written). ``standalone`` stands in for Slicer's module base classes under ``slicer-core``.
"""
