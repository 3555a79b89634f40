#!/usr/bin/env python3
"""A stand-in Kubernetes API server for nodeimg's tests, on 127.0.0.1 only.

It answers what the real kubectl asks when it lists nodes and pods and
deletes a pod: legacy discovery (/api, /api/v1, /apis), GET of the
objects in a fixture file ({"nodes": [...], "pods": [...]}, objects as the
API returns them), and DELETE of a pod, which it records (one JSON line:
the pod, its namespace and the DeleteOptions kubectl sent) and applies.

usage: fake-apiserver.py FIXTURE DELETIONS_LOG PORT_FILE
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

fixture_path, deletions_path, port_path = sys.argv[1:4]
with open(fixture_path) as f:
    state = json.load(f)

RESOURCES = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "v1",
    "resources": [
        {"name": "nodes", "singularName": "node", "namespaced": False, "kind": "Node",
         "verbs": ["get", "list"]},
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
         "verbs": ["get", "list", "delete"]},
    ],
}


def listing(kind, items):
    return {"kind": kind + "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
            "items": items}


class Handler(BaseHTTPRequestHandler):
    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

    def parts(self):
        return [p for p in self.path.split("?")[0].split("/") if p]

    def do_GET(self):
        p = self.parts()
        if p == ["api"]:
            return self.answer(200, {"kind": "APIVersions", "versions": ["v1"],
                                     "serverAddressByClientCIDRs": []})
        if p == ["apis"]:
            return self.answer(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        if p == ["api", "v1"]:
            return self.answer(200, RESOURCES)
        if p == ["api", "v1", "nodes"]:
            return self.answer(200, listing("Node", state["nodes"]))
        if len(p) == 5 and p[:2] == ["api", "v1"] and p[2] == "namespaces" and p[4] == "pods":
            pods = [x for x in state["pods"] if x["metadata"]["namespace"] == p[3]]
            return self.answer(200, listing("Pod", pods))
        return self.answer(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "reason": "NotFound", "code": 404})

    def do_DELETE(self):
        p = self.parts()
        length = int(self.headers.get("Content-Length") or 0)
        options = json.loads(self.rfile.read(length) or b"{}")
        if len(p) == 6 and p[:3] == ["api", "v1", "namespaces"] and p[4] == "pods":
            ns, name = p[3], p[5]
            for pod in state["pods"]:
                if pod["metadata"]["namespace"] == ns and pod["metadata"]["name"] == name:
                    state["pods"].remove(pod)
                    with open(deletions_path, "a") as log:
                        log.write(json.dumps({"namespace": ns, "pod": name, "options": options}) + "\n")
                    return self.answer(200, pod)
        return self.answer(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "reason": "NotFound", "code": 404})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_path + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.rename(port_path + ".tmp", port_path)
server.serve_forever()
