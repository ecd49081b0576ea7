// Official JavaScript SDKs against hookrouter (used by tests/it/interop.rs).
//
// `sign`: prints, as JSON, sample webhooks signed by the providers' own SDKs.
// `verify`: reads, as JSON, what a target received through hookrouter and checks each request
// with the same SDKs; exits 1 if any fails.
import { sign as githubSign, verify as githubVerify } from "@octokit/webhooks-methods";
import { Webhook as StandardWebhook } from "standardwebhooks";
import { Webhook as SvixWebhook } from "svix";

// Shared with tests/it/interop.rs.
const GITHUB_SECRET = "interop-github-secret";
const SVIX_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STANDARD_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

const BODIES = [
  '{"action":"opened","number":1,"title":"na\u00efve \u00fcber","x": 1.0}',
  '{ "zen" : "Keep it logically awesome.", "hook_id": 1 }',
];

async function sign() {
  const now = new Date();
  const ts = Math.floor(now.getTime() / 1000);
  const out = [];
  for (const [i, body] of BODIES.entries()) {
    out.push({ sdk: "@octokit/webhooks-methods", route: "/hooks/github",
      headers: { "X-Hub-Signature-256": await githubSign(GITHUB_SECRET, body), "X-GitHub-Event": "ping" }, body });
    const id = `msg_js_${i}`;
    out.push({ sdk: "svix (npm)", route: "/hooks/svix",
      headers: { "svix-id": id, "svix-timestamp": String(ts), "svix-signature": new SvixWebhook(SVIX_SECRET).sign(id, now, body) }, body });
    out.push({ sdk: "standardwebhooks (npm)", route: "/hooks/standard",
      headers: { "webhook-id": id, "webhook-timestamp": String(ts), "webhook-signature": new StandardWebhook(STANDARD_SECRET).sign(id, now, body) }, body });
  }
  process.stdout.write(JSON.stringify(out));
}

async function verify() {
  let input = "";
  for await (const chunk of process.stdin) input += chunk;
  const received = JSON.parse(input);
  const failures = [];
  let checked = 0;
  for (const r of received) {
    const headers = Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k.toLowerCase(), v]));
    try {
      if (r.route === "/hooks/github") {
        if (!(await githubVerify(GITHUB_SECRET, r.body, headers["x-hub-signature-256"]))) throw new Error("signature does not verify");
      } else if (r.route === "/hooks/svix") {
        new SvixWebhook(SVIX_SECRET).verify(r.body, headers);
      } else if (r.route === "/hooks/standard") {
        new StandardWebhook(STANDARD_SECRET).verify(r.body, headers);
      } else {
        continue;
      }
      checked += 1;
    } catch (e) {
      failures.push(`${r.route}: ${e.message}`);
    }
  }
  console.log(`JavaScript SDKs verified ${checked} forwarded requests`);
  for (const f of failures) console.log("FAIL", f);
  process.exit(failures.length > 0 || checked === 0 ? 1 : 0);
}

await { sign, verify }[process.argv[2]]();
