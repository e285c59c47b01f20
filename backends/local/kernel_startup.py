# $PYTHONSTARTUP of a local notebook server's kernels (and of `python` in its terminals). It runs in
# the user's namespace, so it leaves no name behind, and nothing here can stop a kernel's start. It
# loads memory_message.py from its own folder (under a private module name), not through the
# `backends` package: the kernel then runs the code of the facility that started it, whichever
# `backends` the user's Python would import.
def _af_install_memory_message() -> None:
    import os
    import sys
    from importlib.util import module_from_spec, spec_from_file_location

    folder = os.path.dirname(os.environ.get("PYTHONSTARTUP", ""))
    try:
        spec = spec_from_file_location("_af_memory_message", os.path.join(folder, "memory_message.py"))
        if spec is None or spec.loader is None:
            return
        module = module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        module.install()
    except Exception:  # noqa: BLE001 - a kernel starts whatever happens here
        return


_af_install_memory_message()
del _af_install_memory_message
