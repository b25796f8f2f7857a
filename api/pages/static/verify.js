// A member's proof of their charge, checked in the browser as `huzhu verify` checks it: the same
// steps as domain/proofs.py (the reference), the same refusals, in WebCrypto (SHA-256, Ed25519).
// No dependency and no build step. On 分摊明细 it checks each charge line's proof and says the
// outcome in that line; `verifyProof` is exported for anyone to run on a document.
//
// Integers are BigInt throughout: a proof's sums and sizes are 64-bit, and Python's verifier
// compares them exactly, so the JSON is read keeping every integer literal exact (and a number
// written as 1.0 is not an integer, as Python's json reads it).

const KIND = "huzhu-charge-proof";
const VERSION = 1n;
const FANOUT = 16;
const SALT = 16;
const HASH = 32;
const CHARGE_LEAF = [0x00];
const NODE = [0x01];
const CASE_LEAF = [0x02];
const LOG_LEAF = [0x00]; // RFC 9162's leaf and node prefixes
const LOG_NODE = [0x01];
// Python refuses to read an integer of more digits than this (sys.get_int_max_str_digits).
const MAX_DIGITS = 4300;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
const ENTRY_COUNTS = ["cycle_id", "share_fen", "charged_fen", "members", "aid_fen", "cases"];
// RFC 8032's first test key: importing it tells whether this browser has Ed25519.
const PROBE_KEY = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

export const STEPS = [
  "format",
  "your leaf",
  "path to the root",
  "totals",
  "cases",
  "log entry",
  "signed head",
  "published head",
];

/** A step refused the proof; the message says why (the same words as the Python's). */
class Refused extends Error {}

/** The proof is not shaped as a proof (Python's KeyError, TypeError, ValueError…). */
class Malformed extends Error {}

/** This browser cannot check: no WebCrypto (not a secure context) or no Ed25519 in it. */
export class Unsupported extends Error {}

/**
 * Every step of the check, in order, as [{name, ok, detail}]; a failed step stops the ones
 * after it. `proof` is the document's JSON text (read exactly) or an already parsed object.
 * `trustedKey` (hex or bytes) pins the log's key; `expectedMember` is whose proof it must be,
 * `expectedCycle` (a number) which cycle's.
 * The browser has no head published since, so "published head" passes as Python's does
 * without --head. Throws Unsupported when the browser cannot check.
 */
export async function verifyProof(
  proof,
  { trustedKey = null, expectedMember = null, expectedCycle = null } = {},
) {
  if (!globalThis.crypto?.subtle) throw new Unsupported("WebCrypto is not available here");
  const pinned = trustedKey == null ? null : asBytes(trustedKey);
  const state = {};
  const steps = [
    () => format(state, proof),
    () => yourLeaf(state, expectedMember, expectedCycle),
    () => pathToRoot(state),
    () => totals(state),
    () => cases(state),
    () => inLog(state),
    () => signedHead(state, pinned),
    () => "no published head given (--head)",
  ];
  const checks = [];
  for (const [number, name] of STEPS.entries()) {
    try {
      checks.push({ name, ok: true, detail: await steps[number]() });
    } catch (error) {
      if (error instanceof Unsupported || error?.name === "NotSupportedError") {
        throw new Unsupported(error.message);
      }
      const detail = error instanceof Refused ? error.message : `malformed: ${error.message}`;
      checks.push({ name, ok: false, detail });
      break;
    }
  }
  return checks;
}

/** Every step ran and passed. */
export function holds(checks) {
  return checks.length === STEPS.length && checks.every((check) => check.ok);
}

/** Whether this browser can check a proof at all (WebCrypto with Ed25519). */
export async function canVerify() {
  if (!globalThis.crypto?.subtle) return false;
  try {
    await crypto.subtle.importKey("raw", fromHex(PROBE_KEY), { name: "Ed25519" }, false, [
      "verify",
    ]);
    return true;
  } catch {
    return false;
  }
}

// ---- The steps (domain/proofs.py: _format, _leaf, _path, _totals, _cases, _in_log, _head) ----

function format(state, given) {
  const proof = typeof given === "string" ? parseExact(given) : exact(given);
  state.document = proof;
  if (!equalsStr(get(proof, "kind"), KIND) || !equalsInt(get(proof, "version"), VERSION)) {
    throw new Refused(`not a ${KIND} of version ${VERSION}`);
  }
  state.entry = entryFields(item(item(proof, "log"), "entry"));
  state.head = item(item(proof, "log"), "head");
  return `${KIND} v${VERSION}`;
}

function entryFields(text) {
  if (typeof text !== "string") {
    throw new Malformed(`the JSON object must be str, not ${pyType(text)}`);
  }
  const fields = parseExact(text);
  if (!isDict(fields) || !equalsInt(get(fields, "v"), VERSION)) {
    throw new Refused("the log entry is not of this version");
  }
  for (const name of ENTRY_COUNTS) {
    const value = item(fields, name);
    if (typeof value !== "bigint" || value < 0n || value > INT64_MAX) {
      throw new Refused(`the log entry's ${name} is not a whole number >= 0`);
    }
  }
  return fields;
}

async function yourLeaf(state, expectedMember, expectedCycle) {
  const leaf = item(state.document, "leaf");
  const entry = state.entry;
  if (expectedMember != null && !equalsStr(item(leaf, "member_ref"), expectedMember)) {
    throw new Refused(`this proof is of ${pyStr(leaf.member_ref)}, not of ${expectedMember}`);
  }
  if (expectedCycle != null && !equalsInt(item(leaf, "cycle_id"), BigInt(expectedCycle))) {
    throw new Refused(
      `this proof is of cycle ${pyStr(leaf.cycle_id)}, not of cycle ${expectedCycle}`,
    );
  }
  const amount = whole(item(leaf, "amount_fen"));
  const share = item(entry, "share_fen");
  const cycleId = item(leaf, "cycle_id");
  if (!equalsInt(cycleId, item(entry, "cycle_id"))) {
    throw new Refused(`the leaf is of cycle ${pyStr(cycleId)}, the entry of another`);
  }
  if (!equalsInt(get(leaf, "count"), 1n)) throw new Refused("a member's leaf counts one member");
  if (amount > share) {
    throw new Refused(`the leaf says ${amount} fen, more than the share of ${share}`);
  }
  const salt = fromHex(item(leaf, "salt"));
  if (salt.length !== SALT) throw new Refused(`the salt is ${salt.length} bytes, not ${SALT}`);
  const memberRef = item(leaf, "member_ref");
  state.leaf = await chargeLeaf(cycleId, amount, salt, memberRef);
  return `${pyStr(memberRef)}: ${yuan(amount)} yuan (${amount} fen)`;
}

async function pathToRoot(state) {
  const share = item(state.entry, "share_fen");
  const steps = [];
  for (const level of each(item(state.document, "path"))) {
    const before = each(item(level, "before")).map((data) => sentNode(data, share));
    const after = each(item(level, "after")).map((data) => sentNode(data, share));
    const siblings = before.length + after.length;
    if (!(siblings >= 1 && siblings < FANOUT)) {
      throw new Refused(`level ${steps.length + 1} has ${siblings} siblings`);
    }
    steps.push({ before, after });
  }
  const top = await climb(state.leaf, steps);
  const claimed = sentNode(item(state.document, "root"), share);
  if (!sameNode(top, claimed)) throw new Refused("the path does not lead to the root it names");
  state.root = top;
  return `${steps.length} levels to ${hex(top.hash).slice(0, 16)}…`;
}

/** A sibling or the root as sent: no sum may be negative or more than its members' shares. */
function sentNode(data, share) {
  const hash = fromHex(item(data, "hash"));
  const amount = whole(item(data, "amount_fen"));
  const count = item(data, "count");
  if (hash.length !== HASH || typeof count !== "bigint" || count < 1n || count > INT64_MAX) {
    throw new Refused("a node has a malformed hash or a count below one");
  }
  if (amount > count * share) {
    throw new Refused(`a node sums ${amount} fen for ${count} members, above the share`);
  }
  return { hash, amount, count };
}

function totals(state) {
  const root = state.root;
  const entry = state.entry;
  if (!equalsStr(item(entry, "charges_root"), hex(root.hash))) {
    throw new Refused("the root is not the one in the cycle's log entry");
  }
  if (root.amount !== entry.charged_fen || root.count !== entry.members) {
    throw new Refused(
      `the root sums ${root.amount} fen over ${root.count} members; the cycle published ` +
        `${entry.charged_fen} fen over ${entry.members}`,
    );
  }
  return `${yuan(root.amount)} yuan from ${grouped(root.count)} members, as published`;
}

async function cases(state) {
  const entry = state.entry;
  const leaves = [];
  for (const listed of each(item(state.document, "cases"))) {
    const amount = whole(item(listed, "amount_fen"));
    const leaf = await caseLeaf(item(entry, "cycle_id"), amount, item(listed, "case_ref"));
    leaves.push(record(leaf));
  }
  const top = await sumRoot(leaves);
  if (!equalsStr(item(entry, "cases_root"), hex(top.hash))) {
    throw new Refused("the listed cases do not make the cases root of the log entry");
  }
  if (top.amount !== entry.aid_fen || top.count !== entry.cases) {
    throw new Refused("the cases do not add up to the cycle's aid");
  }
  return `${top.count} cases, ${yuan(top.amount)} yuan of aid`;
}

async function inLog(state) {
  const log = item(state.document, "log");
  const head = state.head;
  const proof = each(item(log, "inclusion")).map((node) => fromHex(node));
  const leaf = await sha256(LOG_LEAF, utf8(item(log, "entry")));
  const index = item(log, "leaf_index");
  const size = item(head, "size");
  if (!(await verifyInclusion(index, size, leaf, proof, fromHex(item(head, "root"))))) {
    throw new Refused(`entry ${pyStr(index)} is not in the log of size ${pyStr(size)}`);
  }
  const fields = state.entry;
  return (
    `entry ${index} of ${size}: ${pyStr(item(fields, "plan"))} cycle ${fields.cycle_id}, ` +
    `announced ${pyStr(item(fields, "announce_on"))}`
  );
}

async function signedHead(state, trustedKey) {
  const head = state.head;
  const key = fromHex(item(head, "public_key"));
  if (trustedKey !== null && !sameBytes(key, trustedKey)) {
    const id = (await keyId(key)).slice(0, 16);
    throw new Refused(`the head is signed with key ${id}…, not yours`);
  }
  const size = item(head, "size");
  const timestamp = item(head, "timestamp_ms");
  const root = fromHex(item(head, "root"));
  const signature = fromHex(item(head, "signature"));
  if (!(await verifyHead(size, timestamp, root, signature, key))) {
    throw new Refused("the head's signature does not verify");
  }
  const pinned = trustedKey !== null ? "pinned" : "as the file names it; pin it with --key";
  return `key ${(await keyId(key)).slice(0, 16)}… (${pinned})`;
}

// ---- The sum tree (domain/sumtree.py): 48-byte records, SHA-256 over children in order ----

async function chargeLeaf(cycleId, amount, salt, memberRef) {
  const head = concat(CHARGE_LEAF, uint64(structInt(cycleId)), int64(amount), int64(1n));
  return { hash: await sha256(head, salt, utf8(memberRef)), amount, count: 1n };
}

async function caseLeaf(cycleId, amount, caseRef) {
  const head = concat(CASE_LEAF, uint64(cycleId), int64(amount), int64(1n));
  return { hash: await sha256(head, utf8(caseRef)), amount, count: 1n };
}

function record(node) {
  return concat(node.hash, int64(node.amount), int64(node.count));
}

function ofRecord(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { hash: bytes.slice(0, HASH), amount: view.getBigInt64(32), count: view.getBigInt64(40) };
}

/** The record over these children's records (one child: the child itself). */
async function parent(children) {
  if (children.length === 1) return children[0];
  let amount = 0n;
  let count = 0n;
  for (const child of children) {
    const node = ofRecord(child);
    amount += node.amount;
    count += node.count;
  }
  return record({ hash: await sha256(NODE, ...children), amount, count });
}

async function climb(leaf, steps) {
  let node = leaf;
  for (const step of steps) {
    node = ofRecord(await parent([...step.before, node, ...step.after].map(record)));
  }
  return node;
}

/** The root over records (sorted here); the empty tree's is SHA-256 of nothing, 0 and 0. */
async function sumRoot(records) {
  if (records.length === 0) return { hash: await sha256(), amount: 0n, count: 0n };
  let level = [...records].sort(compareBytes);
  while (level.length > 1) {
    const above = [];
    for (let start = 0; start < level.length; start += FANOUT) {
      above.push(await parent(level.slice(start, start + FANOUT)));
    }
    level = above;
  }
  return ofRecord(level[0]);
}

// ---- The log (domain/translog.py, RFC 9162) ----

/** RFC 9162 §2.1.3.2: does proof take leaf at index to root of a tree of size? */
async function verifyInclusion(index, size, leaf, proof, root) {
  if (!(isUint64(index) && isUint64(size) && index < size)) return false;
  if (!(isHash(leaf) && isHash(root) && proof.every(isHash))) return false;
  let fn = index;
  let sn = size - 1n;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) return false;
    if (fn & 1n || fn === sn) {
      r = await sha256(LOG_NODE, p, r);
      while (fn !== 0n && (fn & 1n) === 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = await sha256(LOG_NODE, r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && sameBytes(r, root);
}

/** TreeHeadDataV2: timestamp, size, the root with its one-byte length, no extensions. */
function headBytes(size, timestamp, root) {
  if (!isUint64(timestamp) || !isUint64(size) || !isHash(root)) return null;
  return concat(uint64(timestamp), uint64(size), [HASH], root, [0, 0]);
}

async function verifyHead(size, timestamp, root, signature, publicKey) {
  if (publicKey.length !== 32) return false;
  const message = headBytes(size, timestamp, root);
  if (message === null) return false;
  try {
    const key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, [
      "verify",
    ]);
    return await crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
  } catch (error) {
    if (error?.name === "NotSupportedError") throw error;
    return false; // as Python's verify_head: False, never an error
  }
}

async function keyId(publicKey) {
  if (publicKey.length !== 32) throw new Malformed("an Ed25519 public key is 32 raw bytes");
  return hex(await sha256(publicKey));
}

// ---- JSON read exactly, and Python's rules for what a value is ----

/** JSON with every integer literal a BigInt, exactly (a float stays a Number, as in Python). */
export function parseExact(text) {
  return JSON.parse(text, (key, value, context) => {
    if (typeof value !== "number") return value;
    const source = context?.source;
    if (source === undefined) return Number.isSafeInteger(value) ? BigInt(value) : value;
    if (!/^-?\d+$/.test(source)) return value;
    if (source.replace("-", "").length > MAX_DIGITS) {
      throw new Malformed(`an integer of more than ${MAX_DIGITS} digits`);
    }
    return BigInt(source);
  });
}

/** An object already parsed: its whole numbers as BigInt (1.0 cannot be told from 1 here). */
function exact(value) {
  if (typeof value === "number") return Number.isSafeInteger(value) ? BigInt(value) : value;
  if (Array.isArray(value)) return value.map(exact);
  if (isDict(value)) {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, exact(inner)]));
  }
  return value;
}

function isDict(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** Python's container[key] on a dict. */
function item(container, key) {
  if (!isDict(container)) throw new Malformed(`'${pyType(container)}' has no key '${key}'`);
  if (!Object.hasOwn(container, key)) throw new Malformed(`KeyError('${key}')`);
  return container[key];
}

/** Python's dict.get(key): None (null) when absent. */
function get(container, key) {
  if (!isDict(container)) throw new Malformed(`'${pyType(container)}' object has no 'get'`);
  return Object.hasOwn(container, key) ? container[key] : null;
}

/** Python's `for x in value`: a list's items, a string's characters, a dict's keys. */
function each(value) {
  if (Array.isArray(value)) return value;
  if (typeof value === "string") return [...value];
  if (isDict(value)) return Object.keys(value);
  throw new Malformed(`'${pyType(value)}' object is not iterable`);
}

/** Python's value == n for an int n (True is 1, 1.0 is 1). */
/** Python's _is_int: an int equal to n; not a bool, not a float. */
function equalsInt(value, n) {
  return typeof value === "bigint" && value === n;
}

function equalsStr(value, text) {
  return typeof value === "string" && value === text;
}

/** Python's _whole: an int (not a bool, not a float) >= 0. */
function whole(value) {
  if (typeof value !== "bigint" || value < 0n || value > INT64_MAX) {
    throw new Refused(`${pyRepr(value)} is not a whole number of fen >= 0`);
  }
  return value;
}

/** What Python's struct takes as an integer: an int, or a bool. */
function structInt(value) {
  if (typeof value === "bigint") return value;
  if (typeof value === "boolean") return BigInt(value);
  throw new Malformed("required argument is not an integer");
}

function isUint64(value) {
  return typeof value === "bigint" && value >= 0n && value <= UINT64_MAX;
}

function isHash(value) {
  return value instanceof Uint8Array && value.length === HASH;
}

function pyType(value) {
  if (value === null) return "NoneType";
  if (Array.isArray(value)) return "list";
  return { bigint: "int", number: "float", string: "str", boolean: "bool" }[typeof value] ?? "dict";
}

function pyRepr(value) {
  if (typeof value === "string") return `'${value}'`;
  if (typeof value === "number") {
    if (Number.isNaN(value)) return "nan";
    if (!Number.isFinite(value)) return value > 0 ? "inf" : "-inf";
    return Number.isInteger(value) && Math.abs(value) < 1e16 ? value.toFixed(1) : String(value);
  }
  return pyStr(value);
}

function pyStr(value) {
  if (value === null) return "None";
  if (typeof value === "boolean") return value ? "True" : "False";
  if (typeof value === "string" || typeof value === "bigint") return String(value);
  if (typeof value === "number") return pyRepr(value);
  return JSON.stringify(value, (key, inner) => (typeof inner === "bigint" ? Number(inner) : inner));
}

/** Fen as yuan to the fen, e.g. 123456 -> "1,234.56" (domain.money.yuan). */
function yuan(fen) {
  const sign = fen < 0n ? "-" : "";
  const abs = fen < 0n ? -fen : fen;
  return `${sign}${grouped(abs / 100n)}.${String(abs % 100n).padStart(2, "0")}`;
}

/** A whole number with thousands separators (Python's format "{:,}"). */
function grouped(whole) {
  return String(whole).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

// ---- Bytes ----

// bytes.fromhex: pairs of hex digits, ASCII whitespace allowed between the pairs only.
const HEX = /^[ \t\n\v\f\r]*(?:[0-9a-fA-F]{2}[ \t\n\v\f\r]*)*$/;

function fromHex(text) {
  if (typeof text !== "string") {
    throw new Malformed(`fromhex() argument must be str, not ${pyType(text)}`);
  }
  if (!HEX.test(text)) throw new Malformed("non-hexadecimal number found in fromhex() arg");
  const digits = text.replace(/[ \t\n\v\f\r]/g, "");
  const bytes = new Uint8Array(digits.length / 2);
  for (let i = 0; i < bytes.length; i += 1) {
    bytes[i] = Number.parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  }
  return bytes;
}

function hex(bytes) {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function asBytes(key) {
  return key instanceof Uint8Array ? key : fromHex(key);
}

/** UTF-8 as Python's str.encode: a lone surrogate cannot be encoded (TextEncoder would
 * silently write U+FFFD instead). */
function utf8(text) {
  if (typeof text !== "string") throw new Malformed(`'${pyType(text)}' has no 'encode'`);
  if (/\p{Cs}/u.test(text)) throw new Malformed("a lone surrogate cannot be encoded in UTF-8");
  return new TextEncoder().encode(text);
}

function int64(value) {
  if (value < INT64_MIN || value > INT64_MAX) throw new Malformed("int too large to convert");
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigInt64(0, value);
  return bytes;
}

function uint64(value) {
  if (value < 0n || value > UINT64_MAX) throw new Malformed("int too large to convert");
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, value);
  return bytes;
}

function concat(...parts) {
  const arrays = parts.map((part) => (part instanceof Uint8Array ? part : Uint8Array.from(part)));
  const joined = new Uint8Array(arrays.reduce((total, part) => total + part.length, 0));
  let offset = 0;
  for (const part of arrays) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

async function sha256(...parts) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", concat(...parts)));
}

function sameBytes(a, b) {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

function compareBytes(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i += 1) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

function sameNode(a, b) {
  return sameBytes(a.hash, b.hash) && a.amount === b.amount && a.count === b.count;
}

// ---- 分摊明细: each charge line's proof fetched, checked, and the outcome said in it ----

const STEP_ZH = {
  format: "证明格式",
  "your leaf": "您的分摊记录",
  "path to the root": "到总根的路径",
  totals: "本期总额",
  cases: "本期案例",
  "log entry": "日志中的本期记录",
  "signed head": "日志签名",
  "published head": "公布的日志树头",
};
const UNSUPPORTED = "此浏览器无法验证，请下载证明用 huzhu verify 核对";

/** The outcome of one line: [words, tone], the tone a class of the page's style. */
async function checkLine(line, logKey, viewer) {
  const answer = await fetch(line.dataset.proof, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  const type = answer.headers.get("content-type") ?? "";
  if (answer.status === 401) return ["登录已过期，请重新登录后再验证", "bad"];
  if (answer.redirected || !type.includes("json")) {
    return [`无法取得证明（HTTP ${answer.status}），请重新登录后再试`, "bad"];
  }
  if (!answer.ok) {
    const problem = await answer.json().catch(() => ({}));
    if (answer.status === 404) {
      return [`本期暂无可核对的证明${problem.detail ? `（${problem.detail}）` : ""}`, "meta"];
    }
    return [`无法取得证明（HTTP ${answer.status}）`, "bad"];
  }
  const text = await answer.text();
  const member = line.dataset.member;
  const cycle = Number(line.dataset.cycle);
  const checks = await verifyProof(text, {
    trustedKey: logKey,
    expectedMember: member,
    expectedCycle: cycle,
  });
  const failed = checks.find((check) => !check.ok);
  if (failed || !holds(checks)) {
    const step = failed ? STEP_ZH[failed.name] : "未完成";
    return [`✗ 验证未通过：${step}（${failed?.detail ?? ""}）`, "bad"];
  }
  const proof = parseExact(text);
  const whose = member === viewer ? "您的" : `${member} 的`;
  const { amount_fen: total, count } = proof.root;
  return [
    `✓ 已验证：${whose} ${yuan(proof.leaf.amount_fen)} 元计入本期 ${grouped(count)} 人共 ` +
      `${yuan(total)} 元`,
    "ok",
  ];
}

function say(line, text, tone) {
  const status = line.querySelector(".proof-status");
  status.textContent = text;
  status.className = `proof-status ${tone}`;
}

async function showProofs() {
  const list = document.querySelector("[data-log-key]");
  const lines = list ? [...list.querySelectorAll("[data-proof]")] : [];
  if (lines.length === 0) return;
  if (!(await canVerify())) {
    for (const line of lines) say(line, UNSUPPORTED, "meta");
    return;
  }
  const logKey = list.dataset.logKey;
  if (!logKey) {
    for (const line of lines) say(line, "本站日志尚无签名，暂无可核对的证明", "meta");
    return;
  }
  for (const line of lines) say(line, "正在验证…", "meta");
  for (const line of lines) {
    try {
      say(line, ...(await checkLine(line, logKey, list.dataset.self)));
    } catch (error) {
      if (error instanceof Unsupported) say(line, UNSUPPORTED, "meta");
      else say(line, `无法验证：${error.message}`, "bad");
    }
  }
}

if (globalThis.document?.querySelector) showProofs();
