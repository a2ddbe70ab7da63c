// ---- HTTP -------------------------------------------------------------------
const tokenInput = $("token");
tokenInput.value = localStorage.getItem("atask.token") || "";
tokenInput.addEventListener("change", () => localStorage.setItem("atask.token", tokenInput.value.trim()));

// The token goes with every POST and with result downloads (the one read that
// needs it): a plain link cannot send it, so downloads are fetched (below).
function postHeaders(json) {
  const h = {};
  const t = tokenInput.value.trim();
  if (t) h["Authorization"] = "Bearer " + t;
  if (json) h["Content-Type"] = "application/json";
  return h;
}
// Turns a non-2xx response into a readable message.
async function errorText(res) {
  if (res.status === 401) return "401 Unauthorized: enter the API token in the field at the top right.";
  let msg = "";
  try { const body = await res.json(); msg = body && body.error ? body.error : JSON.stringify(body); }
  catch { msg = res.statusText; }
  return `${res.status}: ${msg}`;
}
async function getJson(path, timeoutMs) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  try {
    const res = await fetch(path, { signal: ctl.signal, cache: "no-store" });
    if (res.status === 404) return { missing: true };
    if (!res.ok) throw new Error(await errorText(res));
    return { data: await res.json() };
  } finally { clearTimeout(timer); }
}

