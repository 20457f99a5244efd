#!/usr/bin/python3
"""Runs a command under an OCI seccomp profile — the JSON that Kubernetes Localhost profiles
and container runtimes load — compiled with libseccomp (Debian's python3-seccomp), as the
runtime would. `--without NAME` drops a syscall from the profile's allow rules, to emulate a
runtime default that refuses it.

    seccomp_exec.py PROFILE.json [--without io_uring_setup ...] -- COMMAND [ARGS...]
"""
import json
import os
import sys

import seccomp

OPS = {
    "SCMP_CMP_NE": seccomp.NE,
    "SCMP_CMP_LT": seccomp.LT,
    "SCMP_CMP_LE": seccomp.LE,
    "SCMP_CMP_EQ": seccomp.EQ,
    "SCMP_CMP_GE": seccomp.GE,
    "SCMP_CMP_GT": seccomp.GT,
    "SCMP_CMP_MASKED_EQ": seccomp.MASKED_EQ,
}


def main(argv):
    profile_path, rest = argv[0], argv[1:]
    without = set()
    while rest and rest[0] == "--without":
        without.add(rest[1])
        rest = rest[2:]
    if not rest or rest[0] != "--" or len(rest) < 2:
        sys.exit(__doc__)
    command = rest[1:]
    with open(profile_path) as f:
        profile = json.load(f)
    default_errno = profile.get("defaultErrnoRet", 1)
    if profile["defaultAction"] != "SCMP_ACT_ERRNO":
        sys.exit(f"unsupported defaultAction {profile['defaultAction']}")
    flt = seccomp.SyscallFilter(seccomp.ERRNO(default_errno))
    for rule in profile["syscalls"]:
        if rule["action"] == "SCMP_ACT_ALLOW":
            action = seccomp.ALLOW
        elif rule["action"] == "SCMP_ACT_ERRNO":
            action = seccomp.ERRNO(rule.get("errnoRet", default_errno))
        else:
            sys.exit(f"unsupported action {rule['action']}")
        conditions = [seccomp.Arg(a["index"], OPS[a["op"]], a["value"], a.get("valueTwo", 0)) for a in rule.get("args", [])]
        for name in rule["names"]:
            if name in without:
                continue
            try:
                if seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) < 0:
                    continue  # not a syscall on this architecture
                flt.add_rule(action, name, *conditions)
            except (ValueError, RuntimeError, OSError):
                continue
    flt.load()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
