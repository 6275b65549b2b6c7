// Calls every /v1 endpoint of a live Xent server through a client generated from
// openapi/openapi.json (openapi-typescript types + openapi-fetch), and prints, as one JSON
// object, each call's method, path template, request (body and query) and answer (status, body).
// Usage: node dist/test/calls.js <base-url> <monitor-name>
import createClient from "openapi-fetch";
import type { components, paths } from "../src/schema.js";

// Each request is declared with its generated type: openapi-fetch infers `init` generically, so an
// inline literal is not checked for excess properties; an annotated one is (a misspelt field fails tsc).
type Schema<N extends keyof components["schemas"]> = components["schemas"][N];
type Query<P extends keyof paths, M extends "get" | "post"> = NonNullable<
  NonNullable<paths[P][M]> extends { parameters: { query?: infer Q } } ? Q : never
>;

const [baseUrl, monitor = "ts-client"] = process.argv.slice(2);
if (!baseUrl) throw new Error("usage: calls.js <base-url> [monitor-name]");
const client = createClient<paths>({ baseUrl });

type Call = { method: string; path: string; request: unknown; status: number; body: unknown };
const calls: Call[] = [];
// The two reliability-diagram routes answer image/svg+xml (as the document says): read as text.

async function record(
  method: string,
  path: string,
  request: unknown,
  done: Promise<{ data?: unknown; error?: unknown; response: Response }>,
): Promise<void> {
  const { data, error, response } = await done;
  calls.push({ method, path, request, status: response.status, body: data ?? error ?? null });
}

const logits = [
  [2.0, 0.5, -1.0],
  [0.1, 1.2, 0.3],
  [-0.5, 0.2, 1.7],
  [1.1, 1.0, -0.2],
];
const labels = [0, 1, 2, 1];
const probs = [
  [0.7, 0.2, 0.1],
  [0.2, 0.5, 0.3],
  [0.1, 0.3, 0.6],
  [0.4, 0.4, 0.2],
];

const crossEntropy: Schema<"CrossEntropyBody"> = { logits, labels, reduction: "mean" as const, label_smoothing: 0.1 };
await record("POST", "/v1/cross-entropy", crossEntropy,
  client.POST("/v1/cross-entropy", { body: crossEntropy }));

const divergence: Schema<"DivergenceBody"> = { p_probs: probs, q_logits: logits, reduction: "none" as const };
await record("POST", "/v1/divergence", divergence,
  client.POST("/v1/divergence", { body: divergence }));

const calibration: Schema<"CalibrationBody"> = { probs, labels, n_bins: 5, metrics: ["ece" as const, "brier" as const, "nll" as const] };
await record("POST", "/v1/calibration", calibration,
  client.POST("/v1/calibration", { body: calibration }));

const diagram: Schema<"CalibrationBody"> = { probs, labels, n_bins: 4 };
await record("POST", "/v1/reliability-diagram", diagram,
  client.POST("/v1/reliability-diagram", { body: diagram, parseAs: "text" }));

const temperature: Schema<"TemperatureBody"> = { logits, labels };
await record("POST", "/v1/temperature", temperature,
  client.POST("/v1/temperature", { body: temperature }));

const recalibrate: Schema<"RecalibrateBody"> = { logits, labels, method: "vector" as const, l2: 0.01 };
await record("POST", "/v1/recalibrate", recalibrate,
  client.POST("/v1/recalibrate", { body: recalibrate }));

const apply: Schema<"ApplyBody"> = { logits, temperature: 1.5 };
await record("POST", "/v1/apply", apply, client.POST("/v1/apply", { body: apply }));

const logprobs: Schema<"LogprobsBody"> = {
  response: {
    choices: [
      {
        logprobs: {
          content: [
            { token: "a", logprob: -0.5, bytes: [97], top_logprobs: [] },
            { token: "b", logprob: -1.25, bytes: [98], top_logprobs: [] },
          ],
        },
      },
    ],
  },
};
await record("POST", "/v1/logprobs", logprobs, client.POST("/v1/logprobs", { body: logprobs }));

// Monitors: create, read, list, feed, label, query, then delete.
const name = { name: monitor };
const config: Schema<"MonitorBody"> = { class_names: ["cat", "dog", "bird"], bucket_s: 60 };
await record("PUT", "/v1/monitors/{name}", config,
  client.PUT("/v1/monitors/{name}", { params: { path: name }, body: config }));
await record("GET", "/v1/monitors/{name}", null,
  client.GET("/v1/monitors/{name}", { params: { path: name } }));
await record("GET", "/v1/monitors", null, client.GET("/v1/monitors"));

const observations: Schema<"ObservationsBody"> = { probs, ids: ["r0", "r1", "r2", "r3"], segment: "eu" };
await record("POST", "/v1/monitors/{name}/observations", observations,
  client.POST("/v1/monitors/{name}/observations", { params: { path: name }, body: observations }));
// A KServe inference-logger response event in binary mode: V1 predictions, attributes in ce-* headers.
const eventHeaders = {
  "ce-specversion": "1.0",
  "ce-id": "ev",
  "ce-source": "http://ts-client/",
  "ce-type": "org.kubeflow.serving.inference.response",
};
const event = { predictions: [[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]] };
await record("POST", "/v1/monitors/{name}/events", { headers: eventHeaders, body: event },
  client.POST("/v1/monitors/{name}/events", { params: { path: name }, headers: eventHeaders, body: event }));
const late: Schema<"LabelsBody"> = {
  ids: ["r0", "r1", "r2", "r3", "ev:0", "ev:1"],
  labels: ["cat", "dog", "bird", "dog", "cat", "dog"],
};
await record("POST", "/v1/monitors/{name}/labels", late,
  client.POST("/v1/monitors/{name}/labels", { params: { path: name }, body: late }));

// A language model's sequences (the /v1/logprobs body), and its perplexity over time.
const sequences: Schema<"SequencesBody"> = { ...logprobs, segment: "v1" };
await record("POST", "/v1/monitors/{name}/sequences", sequences,
  client.POST("/v1/monitors/{name}/sequences", { params: { path: name }, body: sequences }));
const perplexityQuery: Query<"/v1/monitors/{name}/perplexity", "get"> = { window: "1h" };
await record("GET", "/v1/monitors/{name}/perplexity", perplexityQuery,
  client.GET("/v1/monitors/{name}/perplexity", { params: { path: name, query: perplexityQuery } }));

const metricsQuery: Query<"/v1/monitors/{name}/metrics", "get"> = { window: "1h", n_bins: 5 };
await record("GET", "/v1/monitors/{name}/metrics", metricsQuery,
  client.GET("/v1/monitors/{name}/metrics", { params: { path: name, query: metricsQuery } }));
const diagramQuery: Query<"/v1/monitors/{name}/reliability-diagram", "get"> = { window: "1h", n_bins: 4 };
await record("GET", "/v1/monitors/{name}/reliability-diagram", diagramQuery,
  client.GET("/v1/monitors/{name}/reliability-diagram", { params: { path: name, query: diagramQuery }, parseAs: "text" }));
const windowQuery: Query<"/v1/monitors/{name}/drift", "get"> & Query<"/v1/monitors/{name}/temperature", "post"> = { window: "1h" };
await record("POST", "/v1/monitors/{name}/temperature", windowQuery,
  client.POST("/v1/monitors/{name}/temperature", { params: { path: name, query: windowQuery } }));
await record("GET", "/v1/monitors/{name}/drift", windowQuery,
  client.GET("/v1/monitors/{name}/drift", { params: { path: name, query: windowQuery } }));
await record("DELETE", "/v1/monitors/{name}", null,
  client.DELETE("/v1/monitors/{name}", { params: { path: name } }));

process.stdout.write(JSON.stringify(calls) + "\n");
