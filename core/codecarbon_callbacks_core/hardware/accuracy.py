"""The stated accuracies and model bounds behind each backend's uncertainty terms, with sources.

Every figure is the half-width of a 95 % interval as a fraction of the energy it applies to
(see :class:`~codecarbon_callbacks_core.hardware.base.UncertaintyTerm`). Where no vendor states
an accuracy, the figure is our bound and the source says what it rests on; the derivation is in
``docs/measurement.md``, section "Uncertainty". NVML's figures live in :mod:`.nvml_uncertainty`.
"""

from __future__ import annotations

#: RAPL counters update about every millisecond (Intel SDM vol. 3B, 15.10.1: "updated
#: approximately every 1 ms"): an edge read sees the counter up to that stale, s
RAPL_UPDATE_PERIOD_S = 0.001

#: RAPL package energy: no vendor accuracy is published. Since Haswell the package figure is
#: measured by the voltage regulators, not modelled (Hackenberg et al., "An Energy Efficiency
#: Feature Survey of the Intel Haswell Processor", IPDPSW 2015), and it tracks wall power closely
#: (Khan et al., "RAPL in Action: Experiences in Using RAPL for Power Measurements", ACM TOMPECS
#: 2018). AMD's RAPL is an on-die estimate (Schöne et al., "Energy Efficiency Aspects of the AMD
#: Zen 2 Architecture", IEEE CLUSTER 2021). Our bound: 5 % for Intel, 15 % for AMD.
RAPL_PACKAGE_ACCURACY = 0.05
RAPL_PACKAGE_ACCURACY_AMD = 0.15
RAPL_PACKAGE_SOURCE = (
    "our bound, no vendor figure: Intel package RAPL measured by the voltage regulators since "
    "Haswell (Hackenberg et al., IPDPSW 2015; Khan et al., ACM TOMPECS 2018)"
)
RAPL_PACKAGE_SOURCE_AMD = (
    "our bound, no vendor figure: AMD RAPL is an on-die estimate (Schoene et al., "
    "IEEE CLUSTER 2021)"
)
#: RAPL DRAM: matches trends but is offset by a roughly constant power, worst at idle
#: (Desrochers, Paradis and Weaver, "A Validation of DRAM RAPL Power Measurements", MEMSYS 2016)
RAPL_DRAM_ACCURACY = 0.2
RAPL_DRAM_SOURCE = (
    "our bound, no vendor figure: DRAM RAPL is offset by a roughly constant power, worst at "
    "idle (Desrochers, Paradis and Weaver, MEMSYS 2016)"
)

#: TDP x load: TDP is a thermal design figure, not a measurement; a package at full load draws
#: from about half its TDP to above it (turbo), and the 20 % idle share is a fleet average (Cloud
#: Carbon Footprint). Fan, Weber and Barroso's linear model is accurate only once calibrated per
#: machine, which we cannot do. Our bound: 50 % of the estimate.
TDP_MODEL_ACCURACY = 0.5
TDP_MODEL_SOURCE = (
    "our bound: TDP is a design figure, full-load power ranges from about half of it to above "
    "it; the linear load model (Fan, Weber and Barroso, ISCA 2007) is uncalibrated here"
)

#: An unknown CPU at 2 W per logical CPU: the TDP shares per thread of common parts span
#: 2.2-7.9 W, and power runs from the idle share (20 %) to all of it: 0.44-7.9 W per thread,
#: up to 4 times the constant. Our bound: 300 %.
UNKNOWN_CPU_BOUND = 3.0
UNKNOWN_CPU_SOURCE = (
    "wide bound for a constant: per-thread power of common CPUs spans 0.44-7.9 W against "
    "the 2 W assumed (cpu_estimate)"
)
#: RAM at 0.375 W/GB (Micron's DDR3/DDR4 calculators at typical use): idle background power is
#: lower, full bandwidth and registered DDR5 higher. Our bound: 100 %.
RAM_MODEL_BOUND = 1.0
RAM_MODEL_SOURCE = (
    "wide bound for a constant: 0.375 W/GB is Micron's DDR3/DDR4 figure at typical use; idle "
    "and full-bandwidth DIMMs, and DDR5, differ by up to that much"
)
#: A power the user forced: its uncertainty is the user's.
FORCED_SOURCE = "forced by the user: its uncertainty is the user's and is not counted"
