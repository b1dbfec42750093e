// The Vercel AI SDK through thinkgate: one tool loop (generateText or streamText) with a
// harmless tool that reads notes.txt from the working directory.
//   node ai_sdk_tool_loop.mjs <gateway base URL> <provider> <generate|stream> <model>
// provider: responses-store | responses-nostore | chat | anthropic
// Prints one JSON line: the final text, the tool calls and results the SDK saw, and the
// steps it took.
import { readFileSync } from "node:fs";
import { generateText, streamText, stepCountIs, tool, jsonSchema } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { createAnthropic } from "@ai-sdk/anthropic";

const [base, provider, mode, modelName] = process.argv.slice(2);
const apiKey = process.env.THINKGATE_API_KEY || "unused";
let model;
let providerOptions = {};
if (provider === "anthropic") {
  model = createAnthropic({ baseURL: `${base}/v1`, apiKey })(modelName);
} else {
  const openai = createOpenAI({ baseURL: `${base}/v1`, apiKey });
  if (provider === "chat") {
    model = openai.chat(modelName);
  } else {
    model = openai(modelName); // the default: the Responses API
    const store = provider === "responses-store";
    providerOptions = {
      openai: { store, forceReasoning: true, ...(store ? {} : { include: ["reasoning.encrypted_content"] }) },
    };
  }
}

const readNote = tool({
  description: "Read a note file from the current directory and return its text.",
  inputSchema: jsonSchema({
    type: "object",
    properties: { name: { type: "string", description: "the file name, e.g. notes.txt" } },
    required: ["name"],
    additionalProperties: false,
  }),
  // harmless: reads one file of the working directory, nothing else
  execute: async ({ name }) => readFileSync(name.replace(/[\\/]/g, ""), "utf8").trim(),
});

const args = {
  model,
  tools: { read_note: readNote },
  stopWhen: stepCountIs(4),
  providerOptions,
  system: "Use the read_note tool to answer.",
  prompt: "What does notes.txt say?",
};
let text, steps;
if (mode === "stream") {
  const r = streamText({ ...args, onError: ({ error }) => { throw error; } });
  let streamed = "";
  for await (const delta of r.textStream) streamed += delta;
  text = await r.text;
  steps = await r.steps;
  if (streamed !== text) throw new Error(`streamed text ${JSON.stringify(streamed)} != final ${JSON.stringify(text)}`);
} else {
  const r = await generateText(args);
  text = r.text;
  steps = r.steps;
}
const calls = steps.flatMap((s) => s.toolCalls.map((c) => c.toolName));
const results = steps.flatMap((s) => s.toolResults.map((r) => r.output));
const warnings = steps.flatMap((s) => (s.warnings || []).map((w) => w.message || w.type));
console.log(JSON.stringify({ text, calls, results, steps: steps.length, warnings }));
