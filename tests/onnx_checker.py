"""The ONNX checker (Debian's python3-onnx) as the tests' oracle, asked one
model at a time (tests/oracle.h): prints "ready" (or "absent" and the reason
when onnx does not import), then answers each path read from stdin with "ok"
or "error" and the checker's message on one line."""
import sys

try:
    import onnx
except ImportError as e:
    print("absent", e, flush=True)
    sys.exit(0)

print("ready", flush=True)
for line in sys.stdin:
    try:
        onnx.checker.check_model(onnx.load(line.strip()), full_check=True)
        print("ok", flush=True)
    except Exception as e:  # the checker's own errors and unreadable files alike
        print("error", " ".join(str(e).split()), flush=True)
