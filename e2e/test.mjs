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

test('models lists the served model', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, [model]);
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
    client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], n: 2 }),
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
