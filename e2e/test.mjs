// End-to-end test of `jamba serve` with the official openai npm client.
// run.sh starts the server and sets JAMBA_URL (and JAMBA_BIN, the jamba
// binary, to compare with `jamba generate`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import OpenAI from 'openai';

const baseURL = process.env.JAMBA_URL;
if (!baseURL) throw new Error('JAMBA_URL is not set: run e2e/run.sh');
const client = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey: 'unused', maxRetries: 0 });
// The served model's id, as `jamba serve` logged it when ready (run.sh).
const model = process.env.JAMBA_MODEL;
if (!model) throw new Error('JAMBA_MODEL is not set: run e2e/run.sh');

async function collect(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

// The LoRA adapter served beside it (jamba serve --lora NAME=DIR).
const adapter = process.env.JAMBA_ADAPTER;
const adapterDir = process.env.JAMBA_ADAPTER_DIR;

test('models lists the served model and its adapter', async () => {
  const ids = [];
  const parents = [];
  for await (const m of client.models.list()) {
    ids.push(m.id);
    parents.push(m.parent ?? null);
  }
  assert.deepEqual(ids, adapter ? [model, adapter] : [model]);
  if (adapter) assert.deepEqual(parents, [null, model]);
});

test('an adapter by name: jamba generate --lora, and not the base', async () => {
  if (!adapter) return;
  const prompt = 'func (w *response) ';
  const res = await client.completions.create({ model: adapter, prompt, max_tokens: 24, temperature: 0, logprobs: 0 });
  assert.equal(res.model, adapter);
  assert.equal(res.usage.completion_tokens, 24);
  if (process.env.JAMBA_BIN) {
    const out = execFileSync(process.env.JAMBA_BIN,
      ['generate', '--lora', adapterDir, '--prompt', prompt, '--max-tokens', '24', '--print-ids'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const lines = out.split('\n');
    assert.equal(res.choices[0].text, lines.slice(0, -2).join('\n'));
  }
  const base = await client.completions.create({ model, prompt, max_tokens: 24, temperature: 0, logprobs: 0 });
  assert.equal(base.model, model);
  const a = res.choices[0].logprobs.token_logprobs;
  const b = base.choices[0].logprobs.token_logprobs;
  assert.ok(res.choices[0].text !== base.choices[0].text || a.some((v, i) => Math.abs(v - b[i]) > 1e-3),
    'the adapter answers as the base does');
  // Streaming chat on the adapter.
  const chunks = await collect(await client.chat.completions.create({
    model: adapter, messages: [{ role: 'user', content: 'hi' }], max_tokens: 5, stream: true,
  }));
  assert.ok(chunks.every((c) => c.model === adapter));
});

test('completion equals jamba generate, streaming and not', async () => {
  const prompt = 'func (s *Server) ';
  const params = { model, prompt, max_tokens: 24, temperature: 0 };
  const res = await client.completions.create(params);
  const choice = res.choices[0];
  assert.equal(res.object, 'text_completion');
  assert.equal(res.usage.completion_tokens, 24);
  assert.equal(res.usage.total_tokens, res.usage.prompt_tokens + 24);
  assert.equal(choice.finish_reason, 'length');

  if (process.env.JAMBA_BIN) {
    // `jamba generate` prints the text, a newline, then the ids line.
    const out = execFileSync(process.env.JAMBA_BIN,
      ['generate', '--prompt', prompt, '--max-tokens', '24', '--print-ids'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const lines = out.split('\n');
    assert.equal(lines.at(-1), '');
    assert.equal(lines.at(-2).split(',').length, 24);
    assert.equal(choice.text, lines.slice(0, -2).join('\n'));
  }

  const chunks = await collect(await client.completions.create({
    ...params, stream: true, stream_options: { include_usage: true },
  }));
  const text = chunks.flatMap((c) => c.choices.map((ch) => ch.text)).join('');
  assert.equal(text, choice.text);
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.completion_tokens, 24);
  assert.equal(chunks.at(-2).choices[0].finish_reason, 'length');
});

test('completion with a token-id prompt', async () => {
  const res = await client.completions.create({ model, prompt: [1, 859, 785], max_tokens: 5, temperature: 0 });
  assert.equal(res.usage.prompt_tokens, 3);
  assert.equal(res.usage.completion_tokens, 5);
});

test('chat, streaming and not, with usage and logprobs', async () => {
  const params = {
    model,
    messages: [{ role: 'system', content: 'You write Go.' }, { role: 'user', content: 'Add two ints.' }],
    max_completion_tokens: 20,
    temperature: 0,
    logprobs: true,
    top_logprobs: 2,
  };
  const res = await client.chat.completions.create(params);
  const msg = res.choices[0].message;
  assert.equal(res.object, 'chat.completion');
  assert.match(res.id, /^chatcmpl-/);
  assert.equal(msg.role, 'assistant');
  assert.equal(typeof msg.content, 'string');
  assert.equal(res.choices[0].logprobs.content.length, res.usage.completion_tokens);
  assert.equal(res.choices[0].logprobs.content.map((l) => l.token).join(''), msg.content);

  const chunks = await collect(await client.chat.completions.create({
    ...params, stream: true, stream_options: { include_usage: true },
  }));
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  assert.ok(chunks.every((c) => c.id === chunks[0].id && c.object === 'chat.completion.chunk'));
  const content = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? '')).join('');
  assert.equal(content, msg.content);
  const finish = chunks.flatMap((c) => c.choices.map((ch) => ch.finish_reason)).filter((f) => f);
  assert.deepEqual(finish, [res.choices[0].finish_reason]);
  assert.deepEqual(chunks.at(-1).usage, res.usage);
});

test('stop strings cut the output the same way streaming and not', async () => {
  const base = await client.completions.create({ model, prompt: 'package main\n\n', max_tokens: 30, temperature: 0 });
  const full = base.choices[0].text;
  const stop = full.slice(6, 10);
  const want = full.slice(0, full.indexOf(stop));
  const params = { model, prompt: 'package main\n\n', max_tokens: 30, temperature: 0, stop: [stop] };
  const res = await client.completions.create(params);
  assert.equal(res.choices[0].text, want);
  assert.equal(res.choices[0].finish_reason, 'stop');
  const chunks = await collect(await client.completions.create({ ...params, stream: true }));
  assert.equal(chunks.flatMap((c) => c.choices.map((ch) => ch.text)).join(''), want);
});

test('errors come back as API errors', async () => {
  await assert.rejects(
    // run.sh starts the server with --max-batch 4: 5 choices cannot run at once.
    client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], n: 5 }),
    (err) => err instanceof OpenAI.BadRequestError && err.status === 400 && err.param === 'n',
  );
  await assert.rejects(
    client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
    (err) => err instanceof OpenAI.NotFoundError && err.code === 'model_not_found',
  );
  await assert.rejects(
    client.completions.create({ model, prompt: 'x', max_tokens: 100000, stream: true }),
    (err) => err instanceof OpenAI.BadRequestError && err.code === 'context_length_exceeded',
  );
  await assert.rejects(
    client.completions.create({ model, prompt: 'x', temperature: 'hot' }),
    (err) => err instanceof OpenAI.BadRequestError && err.param === 'temperature',
  );
});

test('an aborted stream frees its slot', async () => {
  const controller = new AbortController();
  const stream = await client.completions.create(
    { model, prompt: 'func', max_tokens: 5000, ignore_eos: true, stream: true },
    { signal: controller.signal },
  );
  let n = 0;
  try {
    for await (const _ of stream) {
      if (++n === 3) controller.abort(); // chunks already buffered may still arrive
    }
  } catch (err) {
    // Depending on the client version the abort ends the loop or throws.
    assert.ok(err instanceof OpenAI.APIUserAbortError, `unexpected ${err}`);
  }
  assert.ok(n >= 3, `only ${n} chunks arrived`);
  const deadline = Date.now() + 1000;
  for (;;) {
    const metrics = await (await fetch(`${baseURL}/metrics`)).text();
    if (/^jamba_active_sequences 0$/m.test(metrics)) break;
    assert.ok(Date.now() < deadline, 'the slot is still busy a second after the abort');
    await new Promise((r) => setTimeout(r, 20));
  }
});

async function promptTokensComputed() {
  const metrics = await (await fetch(`${baseURL}/metrics`)).text();
  return Number(/^jamba_prompt_tokens_total (\S+)$/m.exec(metrics)[1]);
}

test('n choices compute the prompt once', async () => {
  // A prompt no earlier test sent, so none of it is continued from a
  // finished request's state.
  const prompt = 'type choiceTest struct { a, b int }\nfunc (c choiceTest) sum() int {';
  const before = await promptTokensComputed();
  const res = await client.completions.create({ model, prompt, n: 4, max_tokens: 8, seed: 3 });
  assert.equal(res.choices.length, 4);
  assert.deepEqual(res.choices.map((c) => c.index), [0, 1, 2, 3]);
  assert.equal(res.usage.completion_tokens, 32);
  assert.equal(res.usage.total_tokens, res.usage.prompt_tokens + 32);
  assert.equal(await promptTokensComputed() - before, res.usage.prompt_tokens);
  // Choice i is what one request with seed 3+i gives.
  const one = await client.completions.create({ model, prompt, max_tokens: 8, seed: 5 });
  assert.equal(res.choices[2].text, one.choices[0].text);

  const chunks = await collect(await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'hi' }], n: 2, max_tokens: 5, seed: 1, stream: true,
  }));
  const texts = ['', ''];
  for (const c of chunks) for (const ch of c.choices) texts[ch.index] += ch.delta.content ?? '';
  const whole = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'hi' }], n: 2, max_tokens: 5, seed: 1,
  });
  assert.deepEqual(texts, whole.choices.map((c) => c.message.content));
  await assert.rejects(
    client.completions.create({ model, prompt: 'x', best_of: 2 }),
    (err) => err instanceof OpenAI.BadRequestError && err.param === 'best_of',
  );
});

test('logit_bias: +100 makes a token win, -100 removes it', async () => {
  const prompt = 'func main() {';
  const params = { model, prompt, max_tokens: 3, temperature: 0, logprobs: 0 };
  const forced = await client.completions.create({ ...params, logit_bias: { 300: 100 } });
  const toks = forced.choices[0].logprobs.tokens;
  assert.equal(toks.length, 3);
  assert.ok(toks.every((t) => t === toks[0]), `not one token three times: ${JSON.stringify(toks)}`);
  // The greedy first token's id, from jamba generate; banned, another
  // token comes first.
  const out = execFileSync(process.env.JAMBA_BIN,
    ['generate', '--prompt', prompt, '--max-tokens', '1', '--print-ids'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const first = Number(out.split('\n').at(-2));
  const greedy = await client.completions.create(params);
  const banned = await client.completions.create({ ...params, logit_bias: { [first]: -100 } });
  assert.notEqual(banned.choices[0].logprobs.tokens[0], greedy.choices[0].logprobs.tokens[0]);
});

test('response_format json_schema: every choice is valid', async () => {
  const schema = {
    type: 'object',
    properties: {
      name: { type: 'string', maxLength: 12 },
      age: { type: 'integer', minimum: 0, maximum: 120 },
      role: { enum: ['admin', 'user'] },
      tags: { type: 'array', items: { type: 'string', maxLength: 6 }, maxItems: 3 },
    },
    required: ['name', 'age', 'role'],
    additionalProperties: false,
  };
  const res = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'a user as JSON' }], n: 3, seed: 4,
    response_format: { type: 'json_schema', json_schema: { name: 'user', schema, strict: true } },
  });
  assert.equal(res.choices.length, 3);
  for (const c of res.choices) {
    assert.equal(c.finish_reason, 'stop');
    const v = JSON.parse(c.message.content);
    assert.deepEqual(Object.keys(v).filter((k) => !(k in schema.properties)), []);
    assert.equal(typeof v.name, 'string');
    assert.ok(v.name.length <= 12);
    assert.ok(Number.isInteger(v.age) && v.age >= 0 && v.age <= 120);
    assert.ok(['admin', 'user'].includes(v.role));
    if (v.tags !== undefined) assert.ok(Array.isArray(v.tags) && v.tags.length <= 3);
  }
  const obj = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'json' }], max_tokens: 300, seed: 2,
    response_format: { type: 'json_object' },
  });
  if (obj.choices[0].finish_reason === 'stop') {
    const v = JSON.parse(obj.choices[0].message.content);
    assert.equal(typeof v, 'object');
    assert.ok(v !== null && !Array.isArray(v));
  }
  await assert.rejects(
    client.chat.completions.create({
      model, messages: [{ role: 'user', content: 'x' }],
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'array', uniqueItems: true } } },
    }),
    (err) => err instanceof OpenAI.BadRequestError && err.code === 'unsupported_schema' && /uniqueItems/.test(err.message),
  );
});
