"""The run report: the paper's figures (``figures``) and one HTML page (``html``), put
together from a run folder by ``build.build_report``."""

from alexnet.report.build import ReportOptions, build_report

__all__ = ["ReportOptions", "build_report"]
