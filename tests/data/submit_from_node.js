// A non-Python producer: Node.js with celery-node (npm), sending offline_ingestor.submit.
// usage: node submit_from_node.js BROKER_URL QUEUE PATH JOB_ID
const celery = require("celery-node");

async function main() {
  const [broker, queue, path, jobId] = process.argv.slice(2);
  const client = celery.createClient(broker, broker, queue);
  client.conf.TASK_PROTOCOL = 2;
  client.createTask("offline_ingestor.submit").applyAsync([path], { job_id: jobId });
  await client.isReady();
  await new Promise((resolve) => setImmediate(resolve)); // the publish is issued after isReady
  await client.disconnect();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
