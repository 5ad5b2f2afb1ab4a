"""The engineer's workbench in the GUI: PIN and engineer mode, capture, dataset browser, training,
threshold tuner, versions, shadow mode and the Teach dialog; one widget per module, each taking the
`Workbench`."""

import station.ui  # noqa: F401 - applies the PySide6 6.12 None-refcount guard before any widget exists
from station.ui.workbench.capture_controller import CaptureController
from station.ui.workbench.dataset_browser import DatasetBrowser
from station.ui.workbench.engineer_mode_button import EngineerModeButton
from station.ui.workbench.install import EngineerMenu, install_workbench
from station.ui.workbench.jobs import Job
from station.ui.workbench.pin_dialog import PinDialog
from station.ui.workbench.shadow_feeder import ShadowFeeder
from station.ui.workbench.shadow_panel import ShadowPanel
from station.ui.workbench.teach_dialog import TeachDialog
from station.ui.workbench.threshold_tuner import ThresholdTuner
from station.ui.workbench.training_view import TrainingView
from station.ui.workbench.versions_panel import VersionsPanel
from station.ui.workbench.workbench import Workbench
from station.ui.workbench.workbench_window import WorkbenchWindow

__all__ = ["CaptureController", "DatasetBrowser", "EngineerMenu", "EngineerModeButton", "Job", "PinDialog",
           "ShadowFeeder", "ShadowPanel", "TeachDialog", "ThresholdTuner", "TrainingView", "VersionsPanel",
           "Workbench", "WorkbenchWindow", "install_workbench"]
