// Run with cwd .venv-clients/node (where `openai` from npm is installed), script on stdin:
//   RAG_BASE_URL=... RAG_QUESTION=... node --input-type=module < node_client.mjs
// Prints one JSON line with what the official Node SDK got.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.RAG_BASE_URL, apiKey: "x", maxRetries: 0 });
const messages = [{ role: "user", content: process.env.RAG_QUESTION }];
const out = {};

const done = await client.chat.completions.create({ model: "rag", messages });
out.chat = done.choices[0].message.content;
out.chat_sources = (done.sources || []).length;

// The loop from the SDK's README, over every chunk.
let text = "";
let finish = null;
let sources = 0;
const stream = await client.chat.completions.create({ model: "rag", messages, stream: true });
for await (const chunk of stream) {
  text += chunk.choices[0]?.delta?.content || "";
  if (chunk.choices[0].finish_reason) {
    finish = chunk.choices[0].finish_reason;
    sources = (chunk.sources || []).length;
  }
}
out.stream = text;
out.stream_finish = finish;
out.stream_sources = sources;

const helper = client.chat.completions.stream({ model: "rag", messages, stream_options: { include_usage: true } });
const final = await helper.finalChatCompletion();
out.helper = final.choices[0].message.content;
out.helper_usage = final.usage ? final.usage.total_tokens : null;

const legacy = await client.completions.create({ model: "rag", prompt: process.env.RAG_QUESTION });
out.completion = legacy.choices[0].text;

try {
  await client.chat.completions.create({ model: "rag", messages, response_format: { type: "json_object" } });
  out.error = null;
} catch (e) {
  out.error = { status: e.status, code: e.code, param: e.param, isBadRequest: e instanceof OpenAI.BadRequestError };
}
console.log(JSON.stringify(out));
