// Runs with node >= 22 from the folder holding `ai` and `@ai-sdk/google`
// (scripts/setup_gemini_clients.sh): generateText and streamText with a tool loop
// through thinkgate's Gemini front end; one JSON line of what came back on stdout.
// argv: base_url api_key model
import { readFileSync } from 'node:fs';
import { createGoogleGenerativeAI } from '@ai-sdk/google';
import { generateText, streamText, tool, stepCountIs } from 'ai';
import { z } from 'zod';

const [base, apiKey, model] = process.argv.slice(2);
const google = createGoogleGenerativeAI({ baseURL: `${base}/v1beta`, apiKey });
const ran = [];
const tools = {
  read_file: tool({
    description: 'Read a text file and return its contents.',
    inputSchema: z.object({ path: z.string() }),
    execute: async ({ path }) => {
      ran.push(path);
      return readFileSync(path, 'utf8');
    },
  }),
};
const prompt = 'What does the notes file say?';
const g = await generateText({ model: google(model), tools, stopWhen: stepCountIs(3), prompt });
const s = streamText({ model: google(model), tools, stopWhen: stepCountIs(3), prompt });
let streamed = '';
for await (const d of s.textStream) streamed += d;
const plain = await generateText({ model: google(model), prompt: 'Say hello.' });
console.log(JSON.stringify({ text: g.text, steps: g.steps.length, streamed, plain: plain.text, ran }));
