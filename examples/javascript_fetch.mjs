// Call Xent from JavaScript with Node 20's built-in fetch (no packages).
// Usage: XENT_URL=http://127.0.0.1:8000 node examples/javascript_fetch.mjs
const url = process.env.XENT_URL ?? "http://127.0.0.1:8000";
const headers = { "Content-Type": "application/json" };
if (process.env.XENT_API_KEY) headers.Authorization = `Bearer ${process.env.XENT_API_KEY}`;

async function score(path, body) {
  const response = await fetch(url + path, { method: "POST", headers, body: JSON.stringify(body) });
  const answer = await response.json();
  if (!response.ok) {
    // application/problem+json: status, detail, and a JSON pointer to the offending field
    const error = new Error(answer.detail);
    Object.assign(error, { status: answer.status, pointer: answer.errors?.[0]?.pointer });
    throw error;
  }
  return answer;
}

// Logits as a float32 tensor (row-major) so the service computes in float32.
const logits = Float32Array.from([2.0, 0.5, -1.0, 0.1, 0.2, 3.0, 1.0, 1.0, 1.0]);
const tensor = { shape: [3, 3], datatype: "FP32", data: Array.from(logits) };

const ce = await score("/v1/cross-entropy", { logits: tensor, labels: [0, 2, 1], per_sample: true });
console.log(`cross-entropy ${ce.loss.toFixed(6)} ${ce.convention.unit}, accuracy ${ce.accuracy.toFixed(3)}`);
console.log(`losses ${ce.losses.map((x) => x.toFixed(6)).join(" ")}`);

const div = await score("/v1/divergence", { p_logits: tensor, q_probs: [[1 / 3, 1 / 3, 1 / 3], [0.2, 0.3, 0.5], [0.6, 0.2, 0.2]] });
console.log(`KL(p||q) ${div.mean.kl_pq.toFixed(6)} ${div.convention.unit}`);

try {
  await score("/v1/cross-entropy", { logits: tensor, labels: [0, 2, 7] });
} catch (error) {
  console.log(`rejected: ${error.status} ${error.pointer} ${error.message}`);
}
