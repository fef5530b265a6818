"""Training AlexNet (section 5): :mod:`.train` wires the config, network, data and optimiser into the
generic trainer of :mod:`twogpu.trainer`; :mod:`.optimizer` is the paper's update rule (eq. 1);
:mod:`.schedules` the learning-rate schedules; :mod:`.dashboard` and :mod:`.stall_warning` are hooks."""
